// The dashboard's live model: the last status snapshot, the counters, and a per-second
// throughput series, kept current by the stream's events. Pure functions, so tests can feed
// them events without a server.
import type { QueueStatus, TaskEvent, TransitionEvent } from "./types";

export const WINDOW_SECONDS = 15 * 60;

export interface Throughput {
  /** second (epoch) -> [completed, failed] */
  buckets: Map<number, [number, number]>;
}

export interface LiveModel {
  status: QueueStatus | null;
  counters: Record<string, number>;
  throughput: Throughput;
  /** Server time (ms) of the newest event seen, to measure ages on the server's clock. */
  serverNow: number | null;
  events: number;
}

export function emptyModel(): LiveModel {
  return { status: null, counters: {}, throughput: { buckets: new Map() }, serverNow: null, events: 0 };
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

export function recordThroughput(throughput: Throughput, event: TransitionEvent): Throughput {
  const kind = outcome(event);
  if (kind === null) return throughput;
  const second = Math.floor(event.at / 1000);
  const buckets = new Map(throughput.buckets);
  const bucket: [number, number] = [...(buckets.get(second) ?? [0, 0])] as [number, number];
  bucket[kind] += 1;
  buckets.set(second, bucket);
  for (const key of buckets.keys()) if (key <= second - WINDOW_SECONDS) buckets.delete(key);
  return { buckets };
}

/** The chart's columns: every second of the window ending at `nowSec`, zeros where nothing finished. */
export function series(throughput: Throughput, nowSec: number): [number[], number[], number[]] {
  const xs: number[] = [];
  const completed: number[] = [];
  const failed: number[] = [];
  for (let s = nowSec - WINDOW_SECONDS + 1; s <= nowSec; s++) {
    const [c, f] = throughput.buckets.get(s) ?? [0, 0];
    xs.push(s);
    completed.push(c);
    failed.push(f);
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
