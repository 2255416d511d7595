"""/health, /live, /ready, /health/workers, diagnostics and the shared breaker's controls, on the
session's real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from api.main import create_app
from core.breaker import SharedBreaker
from core.redis import sync_client
from core.settings import Settings
from core.states import State
from core.store import TaskStore
from tests.api.conftest import Pipeline, serve, submit

pytestmark = pytest.mark.anyio


def beat(store: TaskStore, consumer_id: str = "consumer-1", **extra: object) -> None:
    info = {"worker_id": "w1", "host": "box", "pid": 4242, "concurrency": 8, "inflight": 1, "retry_ratio": 0.3}
    info |= {"breaker": "closed", "taken": {"primary": 3, "retry": 1}, "started_at": 1}
    info["beat_at"] = int(time.time() * 1000)
    store.beat(consumer_id, {**info, **extra}, ttl=30)


async def test_live_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/live")).json() == {"status": "ok", "service": "asynctaskflow"}
    response = await client.get("/ready")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "service": "asynctaskflow"})


async def test_health_is_ok_with_a_worker_a_scheduler_and_a_closed_breaker(
    client: httpx.AsyncClient, sync_store: TaskStore
) -> None:
    beat(sync_store)
    sync_store.beat_scheduler({"scheduler_id": "s1"}, ttl=30)

    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok", "redis": "ok", "workers": 1, "scheduler": "ok", "breaker": "closed", "problems": [],
        "auth": "open", "warnings": ["no API_KEYS configured: the API is open to anyone who can reach it"],
        "redis_url": response.json()["redis_url"],
    }  # fmt: skip


async def test_health_is_503_while_the_breaker_is_open(client: httpx.AsyncClient, sync_store: TaskStore) -> None:
    beat(sync_store)
    sync_store.beat_scheduler({"scheduler_id": "s1"}, ttl=30)
    assert (await client.post("/health/workers/open-circuit-breaker")).json()["state"] == "open"

    response = await client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert (body["breaker"], body["problems"]) == ("open", ["circuit breaker open: LLM calls are paused"])


async def test_workers_lists_each_live_pair_with_its_counts(
    client: httpx.AsyncClient, sync_store: TaskStore, pipeline: Pipeline
) -> None:
    beat(sync_store)
    beat(sync_store, "consumer-2", host="other", pid=7)
    sync_store.beat("gone", {"pid": 1}, ttl=30)
    sync_store.leave("gone")
    ids = [await submit(client, f"text {i}") for i in range(4)]
    pipeline.complete(ids[0])
    pipeline.complete(ids[1])
    pipeline.fail(ids[2], State.DLQ)
    pipeline.schedule(ids[3])

    body = (await client.get("/health/workers")).json()

    assert [w["consumer_id"] for w in body["workers"]] == ["consumer-1", "consumer-2"]
    first, second = body["workers"]
    assert (first["host"], first["pid"], first["concurrency"], first["inflight"]) == ("box", 4242, 8, 1)
    assert (first["processed"], first["completed"], first["failed"]) == (4, 2, 2)
    assert (first["retry_ratio"], first["breaker"]) == (0.3, "closed")
    # What it took from each list, as its claims counted it (not the heartbeat's own figures).
    assert (first["taken"], second["taken"]) == ({"primary": 4, "retry": 0}, {"primary": 0, "retry": 0})
    assert first["last_heartbeat"] > 0
    assert (second["host"], second["processed"], second["failed"]) == ("other", 0, 0)
    assert body["breaker"] == {"state": "closed", "fail_counter": 0, "seconds_left": 0.0}


async def test_breaker_controls_act_on_the_breaker_every_worker_reads(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A worker's own SharedBreaker, on its own connection, sees the operator's action at once."""
    seen_by_worker = SharedBreaker(settings, sync_client(settings, decode=False))

    opened = await client.post("/health/workers/open-circuit-breaker")
    assert opened.status_code == 200
    assert opened.json()["state"] == "open" and opened.json()["seconds_left"] > 0
    assert seen_by_worker.state == "open"
    assert (await client.get("/health/workers/circuit-breaker")).json()["state"] == "open"

    reset = await client.post("/health/workers/reset-circuit-breaker")
    assert reset.json() == {"state": "closed", "fail_counter": 0, "seconds_left": 0.0}
    assert seen_by_worker.state == "closed"


@pytest.fixture
async def quick_client(settings: Settings, real_redis: redis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async for c in serve(create_app(settings.model_copy(update={"diagnostics_timeout": 0.3}))):
        yield c


async def test_diagnostics_answers_within_the_timeout_without_workers(quick_client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await quick_client.get("/health/workers/diagnostics")

    assert response.status_code == 200
    assert time.monotonic() - started < 3
    body = response.json()
    assert body["celery"]["answered"] == 0 and body["celery"]["workers"] == {}
    assert body["redis"]["redis_version"].split(".")[0].isdigit()
    assert body["redis"]["used_memory"] > 0 and body["redis"]["connected_clients"] >= 1


async def test_diagnostics_reports_an_unreachable_broker_as_an_error(
    settings: Settings, real_redis: redis.Redis
) -> None:
    # The broker URL follows REDIS_URL; a broker database on a dead port is the same failure as a dead broker.
    app = create_app(settings.model_copy(update={"diagnostics_timeout": 0.3}))
    async for c in serve(app):
        app.state.settings = settings.model_copy(
            update={"diagnostics_timeout": 0.3, "redis_url": "redis://127.0.0.1:1/2"}
        )
        response = await c.get("/health/workers/diagnostics")
    assert response.status_code == 200
    assert response.json()["celery"]["error"].startswith("celery inspect failed")
