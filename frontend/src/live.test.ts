import { describe, expect, it } from "vitest";
import { applyEvent, applyHistory, applySnapshot, edgeCount, emptyModel, series, WINDOW_SECONDS } from "./live";
import type { QueueStatus, ThroughputHistory, TransitionEvent } from "./types";

const status: QueueStatus = {
  queues: { primary: 2, retry: 0, scheduled: 0, dlq: 0 },
  states: { PENDING: 2, ACTIVE: 0, COMPLETED: 5, FAILED: 0, DLQ: 0, SCHEDULED: 0, CANCELLED: 0 },
  retry_ratio: 0.3,
  workers: 1,
};

const move = (from: string, to: string, at: number, counters?: Record<string, number>): TransitionEvent => ({
  event: "transition",
  task_id: "t1",
  from,
  to,
  at,
  counters,
});

describe("live model", () => {
  it("moves a task between state counts and records the counter the event carries", () => {
    let model = applySnapshot(emptyModel(), status);
    model = applyEvent(model, move("PENDING", "ACTIVE", 1_000, { started: 7 }));
    model = applyEvent(model, move("ACTIVE", "COMPLETED", 2_000, { completed: 6 }));
    expect(model.status?.states).toMatchObject({ PENDING: 1, ACTIVE: 0, COMPLETED: 6 });
    expect(model.counters).toEqual({ started: 7, completed: 6 });
    expect(model.serverNow).toBe(2_000);
  });

  it("never lowers a counter when an older value arrives late", () => {
    let model = applyEvent(emptyModel(), move("ACTIVE", "COMPLETED", 1, { completed: 9 }));
    model = applyEvent(model, move("ACTIVE", "COMPLETED", 2, { completed: 8 }));
    expect(model.counters.completed).toBe(9);
  });

  it("treats a creation and a deletion as one side only", () => {
    let model = applySnapshot(emptyModel(), status);
    model = applyEvent(model, move("", "PENDING", 1));
    model = applyEvent(model, move("COMPLETED", "", 2));
    expect(model.status?.states).toMatchObject({ PENDING: 3, COMPLETED: 4 });
  });

  it("counts completed and failed (FAILED and DLQ) per second over the window", () => {
    let model = emptyModel();
    model = applyEvent(model, move("ACTIVE", "COMPLETED", 100_000));
    model = applyEvent(model, move("ACTIVE", "COMPLETED", 100_500));
    model = applyEvent(model, move("ACTIVE", "DLQ", 100_900));
    model = applyEvent(model, move("ACTIVE", "FAILED", 101_000));
    model = applyEvent(model, move("ACTIVE", "SCHEDULED", 101_000));
    const [xs, completed, failed] = series(model.throughput, 101);
    expect(xs).toHaveLength(WINDOW_SECONDS);
    expect(xs.at(-1)).toBe(101);
    expect(completed.slice(-2)).toEqual([2, 0]);
    expect(failed.slice(-2)).toEqual([1, 1]);
  });

  it("forgets seconds older than the window", () => {
    let model = applyEvent(emptyModel(), move("ACTIVE", "COMPLETED", 0));
    model = applyEvent(model, move("ACTIVE", "COMPLETED", WINDOW_SECONDS * 1000));
    expect([...model.throughput.buckets.keys()]).toEqual([WINDOW_SECONDS]);
  });

  it("adds up the counters behind an edge", () => {
    expect(edgeCount({ retried: 3, postponed: 2 }, "active>scheduled")).toBe(5);
    expect(edgeCount({}, "active>dlq")).toBe(0);
  });
});

/** The rings as GET /api/v1/queues/throughput gives them at server time `now` (ms). */
function history(now: number, seconds: Record<number, [number, number]>, minutes: Record<number, [number, number]>): ThroughputHistory {
  const s = Math.floor(now / 1000);
  const m = Math.floor(now / 60_000);
  const ring = (last: number, unit: number, figures: Record<number, [number, number]>) =>
    Array.from({ length: 60 }, (_, i) => {
      const bucket = last - 59 + i;
      const [completed, failed] = figures[bucket] ?? [0, 0];
      return { start: bucket * unit, completed, failed };
    });
  return { now, seconds: ring(s, 1000, seconds), minutes: ring(m, 60_000, minutes) };
}

describe("throughput from history, then live", () => {
  const now = 6_000_500; // second 6000 (minute 100), half a second in
  const total = (values: number[]) => Math.round(values.reduce((a, b) => a + b, 0));

  it("shows what finished before the page opened", () => {
    // 57 completed three minutes ago (minute 97), 2 completed and 1 failed in the last minute.
    const h = history(now, { 5990: [2, 1] }, { 97: [57, 0], 99: [2, 1] });
    const model = { ...emptyModel(), throughput: applyHistory(emptyModel().throughput, h) };
    const [xs, completed, failed] = series(model.throughput, 6000);
    expect(xs.at(-1)).toBe(6000);
    expect(total(completed)).toBe(59);
    expect(total(failed)).toBe(1);
    // Minute 97's 57 spread over its 60 seconds; the last minute per second.
    expect(completed[xs.indexOf(97 * 60 + 30)]).toBeCloseTo(57 / 60);
    expect(completed[xs.indexOf(5990)]).toBe(2);
    expect(total(completed.slice(-60))).toBe(2);
  });

  it("adds each later transition once, and none the history already holds", () => {
    let model = emptyModel();
    // Arrived while the history was being read: one before its time (in it), one after (not).
    model = applyEvent(model, move("ACTIVE", "COMPLETED", now - 100));
    model = applyEvent(model, move("ACTIVE", "COMPLETED", now + 100));
    model = { ...model, throughput: applyHistory(model.throughput, history(now, { 6000: [1, 0] }, { 100: [1, 0] })) };
    expect(total(series(model.throughput, 6000)[1])).toBe(2);
    model = applyEvent(model, move("ACTIVE", "COMPLETED", now - 200)); // late, already in the history
    model = applyEvent(model, move("ACTIVE", "DLQ", now + 2_000));
    const [, completed, failed] = series(model.throughput, 6002);
    expect([total(completed), total(failed)]).toEqual([2, 1]);
  });

  it("spreads only what the exact seconds of a minute do not already count", () => {
    // Minute 99 (5940-5999): 10 in all, of which 4 in its seconds the per-second ring still holds.
    const h = history(now, { 5945: [4, 0] }, { 99: [10, 0] });
    const throughput = applyHistory(emptyModel().throughput, h);
    const [xs, completed] = series(throughput, 6000);
    expect(throughput.exactFrom).toBe(5941);
    expect(completed[xs.indexOf(5940)]).toBe(6); // the one second of minute 99 before the exact ones
    expect(total(completed)).toBe(10);
  });
});
