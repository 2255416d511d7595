"""Where a worker slot's time goes on the I/O-bound workload, beyond the stand-in's 200 ms.

At concurrency C a container can finish at most C / cycle tasks per second, where a slot's cycle
is: claim → the stand-in receives the call (dispatch, Celery's delivery, the task's load, the
request), the call itself, its end → the task is COMPLETED (the answer read, the transition),
and COMPLETED → the consumer claims the next task for the freed slot. This drains a queue
through one container (as section 1 of `make bench`) and splits the cycle from the timestamps
the product already keeps (claim and finish times from Redis' clock, the stand-in's arrival
stamps), over the middle 80 % of the tasks:

    .venv/bin/python -m bench.slot_cycle [--concurrency 64] [--tasks 3000] [--events]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench import load
from bench.sections import TOKEN
from bench.stack import Env, Product
from bench.stats import table
from core.states import State


def spread(values: list[float]) -> list[str]:
    ordered = sorted(values)
    return [f"{statistics.mean(ordered):.1f}", f"{ordered[len(ordered) // 2]:.1f}",
            f"{ordered[len(ordered) * 9 // 10]:.1f}", f"{ordered[-1]:.1f}"]  # fmt: skip


def cycle_parts(rows: list[tuple[float, float, float]], concurrency: int) -> dict[str, list[float]]:
    """The three parts of a slot's cycle in ms, from (claimed, call received, finished) seconds
    per task, over the middle 80 % of the tasks by claim time."""
    rows = sorted(rows)
    low, high = len(rows) // 10, len(rows) * 9 // 10
    middle = rows[low:high]
    claims, finishes = [r[0] for r in rows], sorted(r[2] for r in rows)
    return {
        "claim → the stand-in receives the call": [(got - claimed) * 1e3 for claimed, got, _ in middle],
        "the call and its end → COMPLETED": [(done - got) * 1e3 for _, got, done in middle],
        # The k-th finish frees the slot that the (k + concurrency)-th claim takes.
        "COMPLETED → the freed slot's next claim": [
            (claims[k + concurrency] - finishes[k]) * 1e3 for k in range(low, high - concurrency)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--events", action="store_true", help="CELERY_SEND_TASK_EVENTS=true")
    args = parser.parse_args()
    env = Env()
    system = Product(env, 0.2, args.concurrency, events=args.events)
    try:
        env.reset()
        system.start_api()
        asyncio.run(load.submit_many(system.base_url, args.tasks))
        system.start_workers()
        deadline = time.monotonic() + 300
        while system.done() < args.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        arrived = {m.group(1): c["at"] for c in env.stub_calls(0.2) if (m := TOKEN.search(c["content"]))}
        rows = []  # (claimed, the stand-in received the call, finished), seconds
        completed: list[str] = env.r.zrange(system.keys.state_index(State.COMPLETED), 0, -1)  # type: ignore[assignment]
        for task_id in completed:
            task: dict[str, str] = env.r.hgetall(system.keys.task(task_id))  # type: ignore[assignment]
            token = TOKEN.search(task["content"])
            if token and token.group(1) in arrived:
                rows.append((int(task["started_at"]) / 1e3, arrived[token.group(1)], int(task["finished_at"]) / 1e3))
    finally:
        system.stop()
        env.close()
    c = args.concurrency
    parts = cycle_parts(rows, c)
    print(table(["part of a slot's cycle", "mean ms", "p50 ms", "p90 ms", "max ms"],
                [[name, *spread(values)] for name, values in parts.items()]))  # fmt: skip
    cycle = sum(statistics.mean(values) for values in parts.values())
    print(f"\nmean cycle {cycle:.1f} ms: at most {c / cycle * 1e3:.0f} tasks/s at concurrency {c}, of {c / 0.2:.0f}")


if __name__ == "__main__":
    main()
