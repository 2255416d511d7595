"""Task detail (history, errors, progress, timings, usage), cancel of an ACTIVE task, the
Idempotency-Key, bulk submit and the statistics overview, on the session's real Redis."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import redis

from core.errors import StaleAttempt
from core.keys import DEFAULT_PRIORITY
from core.states import State
from core.store import TaskStore
from tests.api.conftest import Pipeline, submit

pytestmark = pytest.mark.anyio

SUBMIT = "/api/v1/tasks/summarize/"
BULK = "/api/v1/tasks/summarize/bulk"


# --- detail --------------------------------------------------------------------------------------
async def test_detail_shows_the_trail_errors_timings_and_usage(
    client: httpx.AsyncClient, pipeline: Pipeline, sync_store: TaskStore
) -> None:
    task_id = await submit(client)
    pipeline.schedule(task_id, delay=0)
    assert sync_store.promote_due(10) == 1
    pipeline.claim(task_id)
    sync_store.set_progress(task_id, pipeline.tokens[task_id], 60, "writing the summary")
    active = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (active["progress"], active["current_step"], active["attempts"]) == (60, "writing the summary", 2)
    usage = {"prompt_tokens": 90, "completion_tokens": 10, "total_tokens": 100}
    sync_store.complete(task_id, "consumer-1", pipeline.tokens[task_id], "sum", "openrouter", "llama-x", usage)

    body = (await client.get(f"/api/v1/tasks/{task_id}")).json()

    assert [(h["from"], h["to"]) for h in body["history"]] == [
        ("", "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "SCHEDULED"), ("SCHEDULED", "PENDING"),
        ("PENDING", "ACTIVE"), ("ACTIVE", "COMPLETED"),
    ]  # fmt: skip
    assert [(e["error"], e["error_type"], e["worker"]) for e in body["errors"]] == [
        ("timeout", "transient", "consumer-1")
    ]
    assert (body["progress"], body["attempts"], body["model"]) == (100, 2, "llama-x")
    assert body["usage"] == usage
    timings = body["timings"]
    assert timings["total_ms"] == body["finished_at"] - body["created_at"] >= timings["run_ms"] >= 0
    assert timings["queued_ms"] == body["started_at"] - body["created_at"]


async def test_listing_items_carry_the_task_fields_but_not_the_trail(client: httpx.AsyncClient) -> None:
    await submit(client)
    item = (await client.get("/api/v1/tasks/")).json()["items"][0]
    assert "progress" in item and "timings" in item
    assert "history" not in item


# --- cancel of a running task -----------------------------------------------------------------
async def test_cancel_of_an_active_task_is_immediate_and_refuses_the_late_result(
    client: httpx.AsyncClient, pipeline: Pipeline, sync_store: TaskStore
) -> None:
    task_id = await submit(client)
    pipeline.claim(task_id)

    response = await client.post(f"/api/v1/tasks/{task_id}/cancel")

    assert response.status_code == 200
    assert response.json()["state"] == "CANCELLED"
    assert sync_store.inflight_count("consumer-1") == 0, "the consumer's count of work in flight stays right"
    with pytest.raises(StaleAttempt):
        sync_store.complete(task_id, "consumer-1", pipeline.tokens[task_id], "late", "offline")
    body = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (body["state"], body["result"]) == ("CANCELLED", None)
    assert body["history"][-1]["from"] == "ACTIVE" and body["history"][-1]["to"] == "CANCELLED"


# --- idempotency -------------------------------------------------------------------------------
async def test_the_same_idempotency_key_returns_the_same_task(client: httpx.AsyncClient) -> None:
    first = await client.post(SUBMIT, json={"content": "one"}, headers={"Idempotency-Key": "order-17"})
    again = await client.post(SUBMIT, json={"content": "one"}, headers={"Idempotency-Key": "order-17"})
    other = await client.post(SUBMIT, json={"content": "one"}, headers={"Idempotency-Key": "order-18"})

    assert first.status_code == again.status_code == 202
    assert again.json()["task_id"] == first.json()["task_id"] != other.json()["task_id"]
    assert again.json()["created_at"] == first.json()["created_at"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.headers["location"] == first.headers["location"]
    status = (await client.get("/api/v1/queues/status")).json()
    assert status["queues"]["primary"] == 2


async def test_concurrent_duplicates_get_one_task(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    responses = await asyncio.gather(*(client.post(SUBMIT, json={"content": "x"}, headers=headers) for _ in range(20)))

    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["task_id"] for r in responses}) == 1
    assert sum(1 for r in responses if "idempotent-replayed" not in r.headers) == 1
    assert (await client.get("/api/v1/queues/status")).json()["queues"]["primary"] == 1


async def test_a_key_is_remembered_for_the_retention_only(
    client: httpx.AsyncClient, sync_store: TaskStore, real_redis: redis.Redis
) -> None:
    await client.post(SUBMIT, json={"content": "x"}, headers={"Idempotency-Key": "k"})
    ttl = real_redis.pttl(sync_store.keys.idempotency("k"))
    assert 86_000_000 < ttl <= 86_400_000


async def test_an_overlong_idempotency_key_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(SUBMIT, json={"content": "x"}, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# --- bulk -----------------------------------------------------------------------------------------
async def test_bulk_submit_queues_every_item_in_order(client: httpx.AsyncClient, real_redis: redis.Redis,
                                                     sync_store: TaskStore) -> None:  # fmt: skip
    response = await client.post(BULK, json={"items": [{"content": f"text {i}"} for i in range(5)]})

    assert response.status_code == 202
    items = response.json()["items"]
    assert [i["state"] for i in items] == ["PENDING"] * 5
    assert len({i["created_at"] for i in items}) == 1, "one atomic step"
    # No priority and no API keys: the default level's list of the owner "".
    queued = real_redis.lrange(sync_store.keys.pending("primary", DEFAULT_PRIORITY, ""), 0, -1)
    assert queued == [i["task_id"] for i in items]


async def test_bulk_with_an_idempotency_key_replays(client: httpx.AsyncClient) -> None:
    body = {"items": [{"content": "a"}, {"content": "b"}]}
    first = await client.post(BULK, json=body, headers={"Idempotency-Key": "batch-1"})
    again = await client.post(BULK, json=body, headers={"Idempotency-Key": "batch-1"})
    assert [i["task_id"] for i in again.json()["items"]] == [i["task_id"] for i in first.json()["items"]]
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    ("items", "status", "code"),
    [
        ([{"content": "ok"}] * 101, 413, "too_many_items"),
        ([{"content": "ok"}, {"content": "   "}], 422, "validation_error"),
        ([{"content": "ok"}, {"content": "x" * 100_001}], 413, "content_too_large"),
        ([], 422, "validation_error"),
    ],
    ids=["too-many", "blank-item", "long-item", "empty"],
)
async def test_a_refused_bulk_creates_nothing(
    client: httpx.AsyncClient, items: list[dict[str, str]], status: int, code: str
) -> None:
    response = await client.post(BULK, json={"items": items})

    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["message"]
    assert (await client.get("/api/v1/queues/status")).json()["queues"]["primary"] == 0


# --- statistics ------------------------------------------------------------------------------
async def test_statistics_of_an_empty_system(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/tasks/statistics/overview")).json()
    assert body["states"] == {s.value: 0 for s in State}
    assert (body["totals"], body["success_rate"], body["duration_p50_ms"]) == ({}, None, None)
    assert body["throughput_last_minute"] == {"completed": 0, "failed": 0}


async def test_statistics_overview(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    ids = [await submit(client, f"text {i}") for i in range(6)]
    for task_id in ids[:3]:
        pipeline.complete(task_id)
    pipeline.fail(ids[3], State.FAILED)
    pipeline.schedule(ids[4])

    body = (await client.get("/api/v1/tasks/statistics/overview")).json()

    assert body["states"]["COMPLETED"] == 3 and body["states"]["PENDING"] == 1
    assert body["totals"]["submitted"] == 6 and body["totals"]["retried"] == 1
    assert body["success_rate"] == 0.75
    assert 0 < body["duration_p50_ms"] <= body["duration_p95_ms"] <= 100
    assert body["throughput_last_minute"] == {"completed": 3, "failed": 1}
    assert body["throughput_last_hour"] == {"completed": 3, "failed": 1}
