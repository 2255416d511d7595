"""Claims timed in blocks, for bench/priorities.py. Imported there for this source tree; run as a
script by another checkout's code (its root first on PYTHONPATH), it times that code's claim the
same way, so the claim before issue 18 is measured beside this one on the same server. It uses
only what both have: `Keys`, `Ops.create`, `core.lua.source`, `TaskStore.claim`, `Task`'s first fields.

    PYTHONPATH=<root> python bench/claim_probe.py REDIS_URL PREFIX TOTAL
        fills TOTAL pending tasks (one owner, the default priority), prints {"ready": seconds};
        then each line `claim N` on stdin: N timed claims, one JSON line {"ns", "usec", "calls"}.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import uuid
from typing import Any

import redis

from core.keys import Keys
from core.lua import source
from core.store import Ops, TaskStore, new_token
from core.task import Task

CREATE_BATCH = 100  # tasks per create_task call
PIPELINE = 20  # create_task calls per round trip


def fill_calls(client: redis.Redis, calls: list[Any]) -> None:
    """Run create_task `Call`s, PIPELINE of them per round trip."""
    scripts = {name: client.register_script(source(name)) for name in {call.script for call in calls}}
    for start in range(0, len(calls), PIPELINE):
        pipe = client.pipeline(transaction=False)
        for call in calls[start : start + PIPELINE]:
            scripts[call.script](keys=call.keys, args=call.args, client=pipe)
        pipe.execute()


def plain_tasks(count: int) -> list[Task]:
    return [Task(id=str(uuid.uuid4()), task_type="summarize", content="Benchmark text.", max_retries=3)
            for _ in range(count)]  # fmt: skip


def evalsha_stats(client: redis.Redis) -> tuple[float, int]:
    """EVALSHA's total µs and calls since the last CONFIG RESETSTAT."""
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    found = stats.get("cmdstat_evalsha", {})
    return float(found.get("usec", 0)), int(found.get("calls", 0))


def timed_block(client: redis.Redis, store: TaskStore, count: int) -> tuple[list[int], float, int]:
    """`count` claims (one consumer, new work preferred), each timed in ns; then the server's
    EVALSHA µs and calls for exactly them. Raises when a claim does not take a task."""
    samples: list[int] = []
    client.config_resetstat()
    gc.collect()
    gc.disable()  # a collection inside a timed claim is the harness's cost, not the claim's
    try:
        for _ in range(count):
            started = time.perf_counter_ns()
            claim = store.claim("bench-claimer", new_token(), prefer_retry=False)
            samples.append(time.perf_counter_ns() - started)
            if claim.status != "ok":
                raise RuntimeError(f"claim answered {claim.status!r}: the backlog ran out or a task was lost")
    finally:
        gc.enable()
    usec, calls = evalsha_stats(client)
    return samples, usec, calls


def main() -> None:
    url, prefix, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=300)
    keys = Keys(prefix)
    started = time.monotonic()
    ops = Ops(keys)
    fill_calls(client, [ops.create(plain_tasks(min(CREATE_BATCH, total - n))) for n in range(0, total, CREATE_BATCH)])
    store = TaskStore(client, keys)
    print(json.dumps({"ready": time.monotonic() - started}), flush=True)
    for line in sys.stdin:
        word, count = line.split()
        if word != "claim":
            raise SystemExit(f"unknown command {word!r}")
        samples, usec, calls = timed_block(client, store, int(count))
        print(json.dumps({"ns": samples, "usec": usec, "calls": calls}), flush=True)


if __name__ == "__main__":
    main()
