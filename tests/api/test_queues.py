"""GET /api/v1/queues/status and /api/v1/queues/dlq."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from api.main import create_app
from core.settings import Settings
from core.states import State
from core.store import TaskStore
from tests.api.conftest import Pipeline, serve, submit

pytestmark = pytest.mark.anyio


async def test_status_of_an_empty_system(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/queues/status")

    assert response.status_code == 200
    assert response.json() == {
        "queues": {"primary": 0, "retry": 0, "scheduled": 0, "dlq": 0},
        "states": {state.value: 0 for state in State},
        "retry_ratio": 0.3,
        "workers": 0,
        "priorities": [{"priority": p, "primary": 0, "retry": 0} for p in range(10)],
        "top_owners": [],
    }


async def test_status_counts_every_structure(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    ids = [await submit(client, f"text {i}") for i in range(7)]
    pipeline.claim(ids[0])
    pipeline.complete(ids[1])
    pipeline.fail(ids[2], State.FAILED)
    pipeline.fail(ids[3], State.DLQ)
    pipeline.schedule(ids[4])
    await client.post(f"/api/v1/tasks/{ids[5]}/cancel")
    await client.post(f"/api/v1/tasks/{ids[2]}/retry")  # FAILED → PENDING, on the retry list

    body = (await client.get("/api/v1/queues/status")).json()

    assert body["queues"] == {"primary": 1, "retry": 1, "scheduled": 1, "dlq": 1}
    assert body["states"] == {
        "PENDING": 2, "ACTIVE": 1, "SCHEDULED": 1, "COMPLETED": 1, "FAILED": 0, "DLQ": 1, "CANCELLED": 1,
    }  # fmt: skip


async def test_workers_counts_only_live_heartbeats(client: httpx.AsyncClient, sync_store: TaskStore) -> None:
    sync_store.beat("alive-1", {"pid": 1}, ttl=30)
    sync_store.beat("alive-2", {"pid": 2}, ttl=30)
    sync_store.beat("gone", {"pid": 3}, ttl=30)
    sync_store.leave("gone")  # still registered (the reaper has not swept it), but not alive

    assert (await client.get("/api/v1/queues/status")).json()["workers"] == 2
    assert (await client.get("/health")).json()["workers"] == 2


@pytest.fixture
async def pressured_client(settings: Settings, real_redis: redis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"retry_pressure_threshold": 2}))
    async for c in serve(app):
        yield c


async def test_retry_ratio_falls_under_retry_pressure(pressured_client: httpx.AsyncClient) -> None:
    client = pressured_client
    for i in range(4):
        task_id = await submit(client, f"text {i}")
        await client.post(f"/api/v1/tasks/{task_id}/cancel")
        await client.post(f"/api/v1/tasks/{task_id}/retry")

    body = (await client.get("/api/v1/queues/status")).json()

    assert body["queues"]["retry"] == 4
    assert body["retry_ratio"] == pytest.approx(0.3 * 2 / 4)


async def test_dlq_lists_dead_tasks_newest_first_with_their_error(
    client: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    ids = [await submit(client, f"text {i}") for i in range(5)]
    for i, task_id in enumerate(ids[:4]):
        pipeline.fail(task_id, State.DLQ, error=f"provider said no #{i}")

    pages = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/api/v1/queues/dlq", params=params)).json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    items = [item for page in pages for item in page]
    assert [len(p) for p in pages] == [3, 1]
    assert sorted(item["task_id"] for item in items) == sorted(ids[:4])
    assert all(item["state"] == "DLQ" and item["last_error"].startswith("provider said no") for item in items)
    finished = [item["finished_at"] for item in items]
    assert finished == sorted(finished, reverse=True)


async def test_dlq_empty_and_bad_limit(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/queues/dlq")).json() == {"items": [], "next_cursor": None}
    response = await client.get("/api/v1/queues/dlq", params={"limit": 0})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_limit"
