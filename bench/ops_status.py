"""Does the operations API's cost grow with the number of stored tasks? It must not: every figure
comes from a structure's length or a counter the transition scripts keep.

Times GET /api/v1/queues/status, a COMPLETED listing, the statistics overview and /metrics
against a private redis-server with no task, with one page (50) of finished tasks, and with N
more (100,000 by default), and prints a Markdown table. The ratio compares N + 50 tasks with 50,
so that the listing returns a full page in both (with 0 tasks it returns an empty one). The app
runs in-process (httpx's ASGI transport), so the figures are the endpoint's own cost, without a
network or a server around it.

    .venv/bin/python bench/ops_status.py [--tasks 100000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.main import create_app  # noqa: E402
from core.keys import Keys  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import Ops, new_token  # noqa: E402
from core.task import Task  # noqa: E402
from utils import redis_server  # noqa: E402

ENDPOINTS = {
    "GET /api/v1/queues/status": "/api/v1/queues/status",
    "GET /api/v1/tasks/?status=COMPLETED&limit=50": "/api/v1/tasks/?status=COMPLETED&limit=50",
    "GET /api/v1/tasks/statistics/overview": "/api/v1/tasks/statistics/overview",
    "GET /metrics": "/metrics",
}
BATCH = 1000


def fill(client: redis.Redis, keys: Keys, count: int) -> None:
    """`count` tasks through the real transitions (create, claim, complete), a pipeline per batch."""
    ops = Ops(keys)
    scripts = {name: client.register_script(src) for name, src in _sources().items()}
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        tasks = [Task(id=str(uuid.uuid4()), task_type="summarize", content="text", max_retries=3) for _ in range(size)]
        call = ops.create(tasks)
        scripts[call.script](keys=call.keys, args=call.args)
        pipe = client.pipeline(transaction=False)
        tokens = [new_token() for _ in tasks]
        # Every task is new work of no owner at the default level, taken in order: each claim
        # names that list and the id at its head (TaskStore.claim learns them from replies).
        for task, token in zip(tasks, tokens, strict=True):
            call = ops.claim("bench", token, prefer_retry=False, look=f"primary {task.priority}", task_id=task.id)
            scripts[call.script](keys=call.keys, args=call.args, client=pipe)
        pipe.execute()
        pipe = client.pipeline(transaction=False)
        for task, token in zip(tasks, tokens, strict=True):
            call = ops.complete(task.id, "bench", token, "a summary", "offline", "model", {"total_tokens": 10})
            scripts[call.script](keys=call.keys, args=call.args, client=pipe)
        pipe.execute()


def _sources() -> dict[str, str]:
    from core.lua import names, source

    return {name: source(name) for name in names()}


async def time_endpoints(settings: Settings, requests: int) -> dict[str, float]:
    """Median milliseconds per request of each endpoint (after a warm-up)."""
    app = create_app(settings)
    medians: dict[str, float] = {}
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://b") as c:
        for label, path in ENDPOINTS.items():
            for _ in range(20):
                assert (await c.get(path)).status_code == 200
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                await c.get(path)
                samples.append((time.perf_counter() - started) * 1000)
            medians[label] = statistics.median(samples)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    port = redis_server.free_port()
    with tempfile.TemporaryDirectory() as workdir:
        proc = redis_server.start(port, Path(workdir))
        try:
            url = f"redis://127.0.0.1:{port}/0"
            settings = Settings(redis_url=url, redis_key_prefix="bench:", _env_file=None)  # type: ignore[call-arg]
            client = redis.Redis.from_url(url, decode_responses=True)
            empty = asyncio.run(time_endpoints(settings, args.requests))
            fill(client, Keys("bench:"), 50)
            page = asyncio.run(time_endpoints(settings, args.requests))
            started = time.monotonic()
            fill(client, Keys("bench:"), args.tasks)
            filled_in = time.monotonic() - started
            full = asyncio.run(time_endpoints(settings, args.requests))
            stored = client.zcard(Keys("bench:").all_tasks)
        finally:
            proc.terminate()
            proc.wait(10)
    out = sys.stdout
    out.write(f"{args.tasks:,} finished tasks stored in {filled_in:.1f}s; median of {args.requests} requests each.\n\n")
    out.write(f"| endpoint | 0 tasks (ms) | 50 tasks (ms) | {stored:,} tasks (ms) | ratio {stored:,} / 50 |\n")
    out.write("|---|---:|---:|---:|---:|\n")
    for label in ENDPOINTS:
        row = f"| `{label}` | {empty[label]:.2f} | {page[label]:.2f} | {full[label]:.2f} "
        out.write(row + f"| {full[label] / page[label]:.2f} |\n")


if __name__ == "__main__":
    main()
