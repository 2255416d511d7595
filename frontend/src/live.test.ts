import { describe, expect, it } from "vitest";
import { applyEvent, applySnapshot, edgeCount, emptyModel, series, WINDOW_SECONDS } from "./live";
import type { QueueStatus, TransitionEvent } from "./types";

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
