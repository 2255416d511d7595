// The dashboard's live model: the last status snapshot, the counters, and the throughput: the
// recent history the server's rings hold, then every transition of the stream added to it.
// Pure functions, so tests can feed them events without a server.
import type { QueueStatus, TaskEvent, ThroughputHistory, TransitionEvent } from "./types";

export const WINDOW_SECONDS = 15 * 60;
/** How long the events already added stay remembered one by one: a history read answered within
 * this time is merged without counting any of them twice or losing one (see applyHistory). */
const RECENT_MS = 10_000;

type Counts = [number, number]; // [completed, failed]

export interface Throughput {
  /** second (epoch) -> [completed, failed], exact: from the per-second ring and the stream. */
  buckets: Map<number, Counts>;
  /** minute (epoch) -> [completed, failed], from the per-minute ring: the seconds before `exactFrom`. */
  minutes: Map<number, Counts>;
  /** The first second `buckets` holds exactly; null before any history (the stream's seconds only). */
  exactFrom: number | null;
  /** Server time (ms) of the last history read: a transition at or before it is already in it. */
  syncedAt: number | null;
  /** The server's clock minus this browser's (ms), as the last history read found it: the chart's
   * "now" is the server's, so a browser whose clock is off still shows the right seconds. */
  clockOffsetMs: number;
  /** The finishing transitions added in the last RECENT_MS, as [at (ms), kind]. */
  recent: [number, 0 | 1][];
}

export interface LiveModel {
  status: QueueStatus | null;
  counters: Record<string, number>;
  /** Whether the counters have been read from the server (until then a zero means "unknown"). */
  countersRead: boolean;
  throughput: Throughput;
  /** Server time (ms) of the newest event seen, to measure ages on the server's clock. */
  serverNow: number | null;
  events: number;
}

export function emptyThroughput(): Throughput {
  return { buckets: new Map(), minutes: new Map(), exactFrom: null, syncedAt: null, clockOffsetMs: 0, recent: [] };
}

export function emptyModel(): LiveModel {
  return { status: null, counters: {}, countersRead: false, throughput: emptyThroughput(), serverNow: null, events: 0 };
}

/** Counters only move forward; a late or replayed value never lowers one. */
export function mergeCounters(current: Record<string, number>, update: Record<string, number>) {
  const next = { ...current };
  for (const [name, value] of Object.entries(update)) next[name] = Math.max(next[name] ?? 0, value);
  return next;
}

/** A task that entered COMPLETED counts as completed; FAILED or DLQ as failed (as the API counts). */
export function outcome(event: TransitionEvent): 0 | 1 | null {
  if (event.to === "COMPLETED") return 0;
  if (event.to === "FAILED" || event.to === "DLQ") return 1;
  return null;
}

function add(buckets: Map<number, Counts>, second: number, kind: 0 | 1): void {
  const bucket: Counts = [...(buckets.get(second) ?? [0, 0])] as Counts;
  bucket[kind] += 1;
  buckets.set(second, bucket);
}

function forgetBefore<V>(map: Map<number, V>, first: number): void {
  for (const key of map.keys()) if (key < first) map.delete(key);
}

export function recordThroughput(throughput: Throughput, event: TransitionEvent): Throughput {
  const kind = outcome(event);
  // Already in the history read (the ring is ticked in the same step as the event is sent).
  if (kind === null || (throughput.syncedAt !== null && event.at <= throughput.syncedAt)) return throughput;
  const second = Math.floor(event.at / 1000);
  const buckets = new Map(throughput.buckets);
  add(buckets, second, kind);
  forgetBefore(buckets, second - WINDOW_SECONDS + 1);
  // Oldest first (the stream's order), so the expired ones are a prefix.
  let expired = 0;
  while (expired < throughput.recent.length && throughput.recent[expired][0] <= event.at - RECENT_MS) expired++;
  const recent = throughput.recent.slice(expired);
  recent.push([event.at, kind]);
  return { ...throughput, buckets, recent };
}

/** Start over from a history read (GET /api/v1/queues/throughput, received at `receivedAt` on
 * this browser's clock): its seconds and minutes, plus the transitions already added that it does
 * not hold (those after its `now`). */
export function applyHistory(throughput: Throughput, history: ThroughputHistory, receivedAt = history.now): Throughput {
  const buckets = new Map<number, Counts>();
  for (const b of history.seconds) if (b.completed || b.failed) buckets.set(b.start / 1000, [b.completed, b.failed]);
  const minutes = new Map<number, Counts>();
  for (const b of history.minutes) if (b.completed || b.failed) minutes.set(b.start / 60_000, [b.completed, b.failed]);
  const recent = throughput.recent.filter(([at]) => at > history.now);
  for (const [at, kind] of recent) add(buckets, Math.floor(at / 1000), kind);
  const exactFrom = history.seconds.length ? history.seconds[0].start / 1000 : Math.floor(history.now / 1000) + 1;
  return { buckets, minutes, exactFrom, syncedAt: history.now, clockOffsetMs: history.now - receivedAt, recent };
}

/** One second's figures: exact where the seconds are known, else its minute's figures spread
 * evenly over the minute's seconds that the exact ones do not cover. */
function secondValue(throughput: Throughput, second: number, kind: 0 | 1): number {
  const { exactFrom } = throughput;
  if (exactFrom === null || second >= exactFrom) return throughput.buckets.get(second)?.[kind] ?? 0;
  const minute = Math.floor(second / 60);
  const total = throughput.minutes.get(minute)?.[kind] ?? 0;
  if (!total) return 0;
  const end = minute * 60 + 60;
  let exact = 0;
  for (let s = exactFrom; s < end; s++) exact += throughput.buckets.get(s)?.[kind] ?? 0;
  return Math.max(0, total - exact) / (Math.min(end, exactFrom) - minute * 60);
}

/** The chart's columns: every second of the window ending at `nowSec`, zeros where nothing finished. */
export function series(throughput: Throughput, nowSec: number): [number[], number[], number[]] {
  const xs: number[] = [];
  const completed: number[] = [];
  const failed: number[] = [];
  for (let s = nowSec - WINDOW_SECONDS + 1; s <= nowSec; s++) {
    xs.push(s);
    completed.push(secondValue(throughput, s, 0));
    failed.push(secondValue(throughput, s, 1));
  }
  return [xs, completed, failed];
}

function moveState(status: QueueStatus, event: TransitionEvent): QueueStatus {
  const states = { ...status.states };
  const from = event.from as keyof typeof states;
  const to = event.to as keyof typeof states;
  if (event.from && states[from] !== undefined) states[from] = Math.max(0, (states[from] ?? 0) - 1);
  if (event.to) states[to] = (states[to] ?? 0) + 1;
  return { ...status, states };
}

/** Apply one stream event. Queue depths are left to the next snapshot (a transition out of
 * PENDING does not say which list it left); the caller re-reads the status, throttled. */
export function applyEvent(model: LiveModel, event: TaskEvent): LiveModel {
  const serverNow = Math.max(model.serverNow ?? 0, event.at);
  if (event.event !== "transition") return { ...model, serverNow };
  return {
    ...model,
    status: model.status ? moveState(model.status, event) : null,
    counters: event.counters ? mergeCounters(model.counters, event.counters) : model.counters,
    throughput: recordThroughput(model.throughput, event),
    serverNow,
    events: model.events + 1,
  };
}

export function applySnapshot(model: LiveModel, status: QueueStatus): LiveModel {
  return { ...model, status };
}

/** Edges of the flow diagram and the counter (or counters) whose total each shows: each counter
 * is moved by exactly that transition's script (README "Redis keys", `stats:counters`). */
export const EDGE_COUNTERS: Record<string, string[]> = {
  "submit>primary": ["submitted"],
  "primary>active": ["taken_primary"],
  "retry>active": ["taken_retry"],
  "active>completed": ["completed"],
  "active>scheduled": ["retried", "postponed"],
  "scheduled>retry": ["promoted"],
  "active>dlq": ["dead"],
  "active>failed": ["failed"],
  "dlq>retry": ["requeued"],
  "active>retry": ["recovered"],
  "active>primary": ["released"],
};

export function edgeCount(counters: Record<string, number>, edge: string): number {
  return (EDGE_COUNTERS[edge] ?? []).reduce((sum, name) => sum + (counters[name] ?? 0), 0);
}
