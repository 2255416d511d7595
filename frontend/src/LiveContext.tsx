// One live stream per page, shared: the dashboard's model, and a per-event feed that the task
// pages use to follow one task. Events are applied in batches (4 a second) so a busy pipeline
// (hundreds of transitions a second) does not re-render the page on every one.
import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";
import { authHeaders, getJson, observe } from "./api";
import { applyEvent, applyHistory, applySnapshot, emptyModel, mergeCounters, type LiveModel } from "./live";
import { runStream, type SseMessage } from "./sse";
import type { Health, QueueStatus, Statistics, TaskEvent, ThroughputHistory } from "./types";

export const STREAM_URL = "/api/v1/queues/status/stream";
export const THROUGHPUT_URL = "/api/v1/queues/throughput";
const FLUSH_MS = 250;
const STATUS_REFRESH_MS = 1000;
const HEALTH_POLL_MS = 4000;

type EventListener = (event: TaskEvent) => void;

interface Live {
  model: LiveModel;
  health: Health | null;
  subscribe: (listener: EventListener) => () => void;
}

const LiveContext = createContext<Live | null>(null);

export function useLive(): Live {
  const live = useContext(LiveContext);
  if (!live) throw new Error("useLive outside LiveProvider");
  return live;
}

/** Call `listener` for every stream event about `taskId` (or every event when taskId is null). */
export function useTaskEvents(taskId: string | null, listener: EventListener): void {
  const { subscribe } = useLive();
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(
    () => subscribe((event) => (taskId === null || event.task_id === taskId) && latest.current(event)),
    [subscribe, taskId],
  );
}

/** Call `reload` after stream events that `matches`, at most once per `everyMs` (a storm of
 * events costs one request a period, not one per event). */
export function useReloadOnEvents(matches: (event: TaskEvent) => boolean, reload: () => void, everyMs = 1000): void {
  const stale = useRef(false);
  const latest = useRef({ matches, reload });
  latest.current = { matches, reload };
  useTaskEvents(null, (event) => {
    if (latest.current.matches(event)) stale.current = true;
  });
  useEffect(() => {
    const timer = setInterval(() => {
      if (!stale.current) return;
      stale.current = false;
      latest.current.reload();
    }, everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
}

async function readHealth(): Promise<Health | null> {
  try {
    const headers = authHeaders();
    const response = observe(await fetch("/health", { headers }), headers);
    if (response.status !== 200 && response.status !== 503) return null;
    return (await response.json()) as Health;
  } catch {
    return null;
  }
}

function applyItem(model: LiveModel, item: TaskEvent | { snapshot: QueueStatus } | { history: ThroughputHistory; receivedAt: number }): LiveModel {
  if ("snapshot" in item) return applySnapshot(model, item.snapshot);
  if ("history" in item) return { ...model, throughput: applyHistory(model.throughput, item.history, item.receivedAt) };
  return applyEvent(model, item);
}

function useThrottled(action: () => void, ms: number): () => void {
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const latest = useRef(action);
  latest.current = action;
  return useRef(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      latest.current();
    }, ms);
  }).current;
}

export function LiveProvider({ children }: { children: ReactNode }) {
  const [model, setModel] = useState<LiveModel>(emptyModel);
  const [health, setHealth] = useState<Health | null>(null);
  const listeners = useRef(new Set<EventListener>());
  // Applied in arrival order at each flush: events, snapshots and throughput history reads.
  const pending = useRef<(TaskEvent | { snapshot: QueueStatus } | { history: ThroughputHistory; receivedAt: number })[]>([]);

  const refreshStatus = useThrottled(() => {
    getJson<QueueStatus>("/api/v1/queues/status")
      .then((status) => pending.current.push({ snapshot: status }))
      .catch(() => undefined);
  }, STATUS_REFRESH_MS);

  const refreshCounters = () => {
    getJson<Statistics>("/api/v1/tasks/statistics/overview")
      .then((stats) => setModel((m) => ({ ...m, counters: mergeCounters(m.counters, stats.totals), countersRead: true })))
      .catch(() => undefined);
  };

  // The chart starts from what the server's rings hold (the stream only tells what happens from
  // now on); read again after every (re)connection, which may have missed transitions.
  const refreshThroughput = () => {
    getJson<ThroughputHistory>(THROUGHPUT_URL)
      .then((history) => pending.current.push({ history, receivedAt: Date.now() }))
      .catch(() => undefined);
  };

  const onMessage = (message: SseMessage) => {
    let data: unknown;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (message.event === "snapshot") {
      pending.current.push({ snapshot: data as QueueStatus });
      refreshCounters();
      refreshThroughput();
    } else if (message.event === "transition" || message.event === "progress") {
      const event = { ...(data as TaskEvent), event: message.event } as TaskEvent;
      pending.current.push(event);
      listeners.current.forEach((listener) => listener(event));
      if (message.event === "transition") refreshStatus();
    }
  };

  useEffect(() => {
    const stop = new AbortController();
    void runStream({ url: STREAM_URL, onMessage }, stop.signal);
    const flush = setInterval(() => {
      if (!pending.current.length) return;
      const batch = pending.current.splice(0);
      setModel((m) => batch.reduce(applyItem, m));
    }, FLUSH_MS);
    const pollHealth = () => void readHealth().then(setHealth);
    pollHealth();
    const healthTimer = setInterval(pollHealth, HEALTH_POLL_MS);
    return () => {
      stop.abort();
      clearInterval(flush);
      clearInterval(healthTimer);
    };
  }, []);

  const subscribe = useRef((listener: EventListener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }).current;

  return <LiveContext.Provider value={{ model, health, subscribe }}>{children}</LiveContext.Provider>;
}
