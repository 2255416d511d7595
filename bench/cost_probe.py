"""A task's life step by step through the product's own code, for bench/redis_cost.py. Imported
there for this source tree; run as a script by another checkout's code (its root first on
PYTHONPATH), it runs that code's steps the same way on the same server, so the code before issue
19's reduction is measured beside this one in the same run. It uses only what both have: the
settings, `Keys`, the stores' `create_many`, `claim`, `complete`, the consumer's Celery dispatch
and the worker's broker channel.

    PYTHONPATH=<root> python -P bench/cost_probe.py REDIS_URL PREFIX WORKER_ID
        (-P: this folder is not put first on sys.path, where its trace.py would shadow the
        standard library's)
        prints {"scripts": {sha1: name}} (each script as EVALSHA names it), then for each line
        `<step> <count>` on stdin (a step of STEP_KEYS, in their order) runs it on a block of
        `count` tasks and prints {"done": <step>}.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import sys
import uuid

from core.keys import DEFAULT_PRIORITY, Keys
from core.lua import names, source
from core.redis import async_client, sync_client
from core.settings import Settings
from core.store import AsyncTaskStore, TaskStore, new_token
from core.task import Task

# The steps of a task's life, in order; each runs on the whole block before the next. The last,
# the scheduler's fold of the completions' tally into the figures, once per block (code from before
# the tally has none: the step then sends nothing).
STEP_KEYS = ("create_task", "claim_task", "handoff", "complete_task", "fold_tally")

# A completed answer as a provider gives it: the result, who answered, and the token usage.
RESULT = "A short summary of the benchmark text: the queue keeps every task until a worker is done with it. " * 2
PROVIDER, MODEL = "openai", "bench-model"
USAGE = {"prompt_tokens": 150, "completion_tokens": 60, "total_tokens": 210}

Claimed = tuple[str, str, dict[str, str]]  # task id, attempt token, what the claim returned of it


class Life:
    """The product's clients as its processes hold them, on one server and prefix: the API's
    asyncio store, the consumer's and the worker's stores, the consumer's Celery dispatch and the
    worker's broker channel (its BRPOP). `run_step` runs one step on a block of tasks."""

    def __init__(self, redis_url: str, prefix: str, worker_id: str) -> None:
        from consumer.__main__ import celery_dispatch  # here: Celery is loaded only for this section
        from worker.celery_app import create_celery

        self.settings = Settings(redis_url=redis_url, redis_key_prefix=prefix, _env_file=None)  # type: ignore[call-arg]
        keys = Keys(prefix)
        self.loop = asyncio.Runner()
        self.api = AsyncTaskStore(async_client(self.settings), keys)
        self.consumer = TaskStore(sync_client(self.settings), keys)
        self.worker = TaskStore(sync_client(self.settings, patient=True), keys)
        self.consumer_id = f"{worker_id}:{os.getpid()}:{secrets.token_hex(3)}"
        self.celery = create_celery(self.settings)
        queue = str(self.celery.conf.task_default_queue)
        self.dispatch = celery_dispatch(self.celery, queue)
        self.connection = self.celery.connection_for_read()
        channel = self.connection.default_channel
        # The worker's BRPOP as kombu sends it: the queue at each priority step, a 1 s timeout.
        self.broker, self.queues = channel.client, [channel._q_for_pri(queue, p) for p in channel.priority_steps]
        self.claimed: list[Claimed] = []  # the block's tasks, from its claim step to its completion

    def run_step(self, step: str, count: int) -> None:
        """One step of STEP_KEYS on the block: `count` submits, or the block's claims, hand-offs
        or completions (the block is the last `count` tasks submitted), or one fold of their tally."""
        if step == "create_task":
            self.submit(count)
        elif step == "claim_task":
            self.claimed = self.claim(count)
        elif step == "handoff":
            self.hand_off(self.claimed)
        elif step == "complete_task":
            self.complete(self.claimed)
        elif step == "fold_tally":
            if hasattr(self.worker, "fold_tally"):
                self.worker.fold_tally()
        else:
            raise ValueError(f"no step {step!r}")

    def submit(self, count: int) -> list[str]:
        """`count` submits of one task each, as the API makes them (no API key: no owner)."""
        return self.loop.run(self._submit(count))

    async def _submit(self, count: int) -> list[str]:
        ids = []
        retention = self.settings.idempotency_ttl_seconds * 1000
        for _ in range(count):
            task = Task(id=str(uuid.uuid4()), task_type="summarize", content=_content(),
                        max_retries=self.settings.max_retries, priority=DEFAULT_PRIORITY)  # fmt: skip
            ids += (await self.api.create_many([task], "", retention)).ids
        return ids

    def claim(self, count: int) -> list[Claimed]:
        found = []
        for _ in range(count):
            token = new_token()
            claim = self.consumer.claim(self.consumer_id, token, prefer_retry=False)
            if claim.status != "ok":
                raise RuntimeError(f"claim answered {claim.status!r}: a submitted task was not there")
            found.append((claim.task_id, token, claim.fields or {}))
        return found

    def hand_off(self, claimed: list[Claimed]) -> None:
        """Each claimed task's Celery message published (the consumer) and taken (the worker)."""
        for task_id, token, fields in claimed:
            self.dispatch(task_id, token, self.consumer_id, fields)
            if self.broker.brpop(self.queues, timeout=1) is None:
                raise RuntimeError(f"task {task_id}: its Celery message did not arrive")

    def complete(self, claimed: list[Claimed]) -> None:
        for task_id, token, _ in claimed:
            self.worker.complete(task_id, self.consumer_id, token, RESULT, PROVIDER, MODEL, USAGE)

    def close(self) -> None:
        self.loop.run(self.api.r.aclose())
        self.loop.close()
        self.connection.release()
        self.celery.close()
        self.consumer.r.close()
        self.worker.r.close()


def _content() -> str:
    return f"Benchmark text {uuid.uuid4().hex}. The queue keeps every task until a worker is done with it."


def script_shas() -> dict[str, str]:
    """sha1 → name of every transition script of this code, as EVALSHA names it (the sha of
    core/lua.py's full source: `_lib.lua` included)."""
    return {hashlib.sha1(source(name).encode()).hexdigest(): name for name in names()}


def main(argv: list[str]) -> None:
    redis_url, prefix, worker_id = argv
    life = Life(redis_url, prefix, worker_id)
    print(json.dumps({"scripts": script_shas()}), flush=True)
    try:
        for line in sys.stdin:
            step, count = line.split()
            life.run_step(step, int(count))
            print(json.dumps({"done": step}), flush=True)
    finally:
        life.close()


if __name__ == "__main__":
    main(sys.argv[1:])
