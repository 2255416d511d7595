"""5. Costs that must not grow with the number of stored tasks: the product's API (a real
uvicorn process, over keep-alive HTTP) timed with 0, then 100,000, then 1,000,000 finished tasks
stored through the real transitions (bench/ops_status.py's `fill`)."""

from __future__ import annotations

import asyncio
import statistics
import time

from bench import load
from bench.ops_status import fill
from bench.stack import PREFIX, Env, Product
from core.keys import Keys

GETS = {
    "GET /api/v1/queues/status": "/api/v1/queues/status",
    "GET /api/v1/tasks/?status=COMPLETED&limit=50": "/api/v1/tasks/?status=COMPLETED&limit=50",
    "GET /api/v1/tasks/statistics/overview": "/api/v1/tasks/statistics/overview",
    "GET /metrics": "/metrics",
}
SSE = ("SSE /api/v1/queues/status/stream (to the snapshot)", "/api/v1/queues/status/stream")
GUARDED = ("GET /api/v1/queues/status", "GET /api/v1/tasks/?status=COMPLETED&limit=50", SSE[0])


def scale_runs(env: Env, sizes: list[int], rounds: int, requests: int) -> dict[int, dict[str, list[float]]]:
    """For each size (ascending; tasks are added, never removed): `rounds` medians per endpoint,
    each of `requests` sequential requests (SSE: a fifth as many streams opened)."""
    env.reset()
    system = Product(env, 0.0)
    found: dict[int, dict[str, list[float]]] = {}
    stored = 0
    try:
        system.start_api()
        for size in sizes:
            started = time.monotonic()
            fill(env.r, Keys(PREFIX), size - stored)
            stored = size
            found[size] = {"fill_s": [time.monotonic() - started]}
            for _ in range(rounds):
                for label, ms in asyncio.run(_one_round(system.base_url, requests)).items():
                    found[size].setdefault(label, []).append(ms)
    finally:
        system.stop()
    return found


async def _one_round(base_url: str, requests: int) -> dict[str, float]:
    medians = {label: statistics.median(await load.get_ms(base_url, path, requests)) for label, path in GETS.items()}
    medians[SSE[0]] = statistics.median(await load.sse_snapshot_ms(base_url, SSE[1], max(5, requests // 5)))
    return medians
