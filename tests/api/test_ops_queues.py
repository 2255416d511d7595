"""The ids in each queue, the DLQ re-drive and purge, and the live SSE stream read by a real
client from a real uvicorn server, all on the session's real Redis."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from api.main import create_app
from core.settings import Settings
from core.states import State
from core.store import TaskStore
from tests.api.conftest import Pipeline, serve, submit
from utils.redis_server import free_port

pytestmark = pytest.mark.anyio


# --- /queues/{name}/tasks --------------------------------------------------------------------------
async def test_queue_tasks_pages_through_the_primary_list_in_fifo_order(client: httpx.AsyncClient) -> None:
    ids = [await submit(client, f"text {i}") for i in range(5)]

    first = (await client.get("/api/v1/queues/primary/tasks", params={"limit": 2})).json()
    second = (await client.get("/api/v1/queues/primary/tasks", params={"limit": 2, "cursor": first["next_cursor"]}))
    last = (await client.get("/api/v1/queues/primary/tasks", params={"limit": 2, "cursor": "4"})).json()

    assert (first["queue"], first["total"]) == ("primary", 5)
    assert [i["task_id"] for i in first["items"]] == ids[:2] and first["items"][0]["score"] is None
    assert [i["task_id"] for i in second.json()["items"]] == ids[2:4]
    assert ([i["task_id"] for i in last["items"]], last["next_cursor"]) == (ids[4:], None)


async def test_queue_tasks_of_the_scheduled_set_come_by_due_time(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    late, soon = await submit(client), await submit(client)
    pipeline.schedule(late, delay=600)
    pipeline.schedule(soon, delay=60)

    body = (await client.get("/api/v1/queues/scheduled/tasks")).json()

    assert [i["task_id"] for i in body["items"]] == [soon, late]
    due = (await client.get(f"/api/v1/tasks/{soon}")).json()["due_at"]
    assert body["items"][0]["score"] == due
    assert (await client.get("/api/v1/queues/retry/tasks")).json() == {
        "queue": "retry", "total": 0, "items": [], "next_cursor": None,
    }  # fmt: skip


async def test_queue_tasks_errors(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/api/v1/queues/nope/tasks")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "code": "queue_not_found", "message": "no queue 'nope'; expected one of primary, retry, scheduled, dlq",
    }  # fmt: skip
    bad = await client.get("/api/v1/queues/primary/tasks", params={"cursor": "-1"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")
    too_big = await client.get("/api/v1/queues/primary/tasks", params={"limit": 21})
    assert (too_big.status_code, too_big.json()["code"]) == (422, "invalid_limit")


# --- DLQ re-drive and purge -------------------------------------------------------------------------
async def dead_tasks(client: httpx.AsyncClient, pipeline: Pipeline, count: int) -> list[str]:
    ids = [await submit(client, f"text {i}") for i in range(count)]
    for task_id in ids:
        pipeline.fail(task_id, State.DLQ, error="bad key")
    return ids


async def test_dlq_entries_carry_their_last_error(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    [task_id] = await dead_tasks(client, pipeline, 1)
    body = (await client.get("/api/v1/queues/dlq")).json()
    assert [(i["task_id"], i["last_error"]) for i in body["items"]] == [(task_id, "bad key")]


async def test_requeue_given_ids(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    ids = await dead_tasks(client, pipeline, 3)
    alive = await submit(client)

    response = await client.post("/api/v1/queues/dlq/requeue", json={"task_ids": [ids[0], alive, "unknown"]})

    assert response.status_code == 200
    assert response.json() == {"requeued": 1, "not_dead": [alive, "unknown"]}
    assert (await client.get(f"/api/v1/tasks/{ids[0]}")).json()["state"] == "PENDING"
    assert (await client.get("/api/v1/queues/status")).json()["queues"] == {
        "primary": 1, "retry": 1, "scheduled": 0, "dlq": 2,
    }  # fmt: skip


async def test_requeue_all_in_batches(settings: Settings, real_redis: redis.Redis, pipeline: Pipeline) -> None:
    async for client in serve(create_app(settings.model_copy(update={"scheduler_batch_size": 2}))):
        ids = await dead_tasks(client, pipeline, 5)
        response = await client.post("/api/v1/queues/dlq/requeue")
        assert response.json() == {"requeued": 5, "not_dead": []}
        retry = (await client.get("/api/v1/queues/retry/tasks")).json()
        assert sorted(i["task_id"] for i in retry["items"]) == sorted(ids)  # oldest dead first; ties by id
        assert (await client.post("/api/v1/queues/dlq/requeue")).json() == {"requeued": 0, "not_dead": []}


async def test_requeue_with_a_bad_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/queues/dlq/requeue", json={"task_ids": "not-a-list"})
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")


async def test_purge_deletes_every_dead_task_and_only_those(
    settings: Settings, real_redis: redis.Redis, pipeline: Pipeline, sync_store: TaskStore
) -> None:
    async for client in serve(create_app(settings.model_copy(update={"scheduler_batch_size": 2}))):
        ids = await dead_tasks(client, pipeline, 5)
        kept = await submit(client)
        response = await client.delete("/api/v1/queues/dlq")
        assert (response.status_code, response.json()) == (200, {"deleted": 5})
        for task_id in ids:
            assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 404
            assert not real_redis.exists(sync_store.keys.history(task_id))
        assert (await client.get(f"/api/v1/tasks/{kept}")).status_code == 200
        assert (await client.delete("/api/v1/queues/dlq")).json() == {"deleted": 0}


# --- the live stream ------------------------------------------------------------------------------
@pytest.fixture
def live_server(settings: Settings, real_redis: redis.Redis) -> Iterator[str]:
    """The app under a real uvicorn (streaming needs a real server: the in-process transport buffers)."""
    port = free_port()
    app = create_app(settings.model_copy(update={"sse_keepalive_seconds": 0.3}))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def read_events(lines: Iterator[str], count: int, skip: str = "") -> list[tuple[str, dict[str, Any]]]:
    """The next `count` events of an SSE stream (events named `skip` aside), as (name, decoded data)."""
    events: list[tuple[str, dict[str, Any]]] = []
    name, data = "", ""
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and name:
            if name != skip:
                events.append((name, json.loads(data)))
            name, data = "", ""
            if len(events) == count:
                break
    return events


@pytest.mark.timeout(30)
def test_the_stream_sends_a_snapshot_then_each_change_then_keep_alives(
    live_server: str, sync_store: TaskStore
) -> None:
    pipeline = Pipeline(sync_store)
    with (
        httpx.Client(base_url=live_server, timeout=10) as http,
        http.stream("GET", "/api/v1/queues/status/stream") as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["x-accel-buffering"] == "no"
        assert stream.headers["cache-control"] == "no-cache"
        lines = stream.iter_lines()
        [(name, snapshot)] = read_events(lines, 1)
        assert name == "snapshot"
        assert snapshot["queues"] == {"primary": 0, "retry": 0, "scheduled": 0, "dlq": 0}
        # The same body as GET /queues/status (one function builds both).
        assert snapshot["priorities"] == [{"priority": p, "primary": 0, "retry": 0} for p in range(10)]
        assert snapshot["top_owners"] == []

        task_id = http.post("/api/v1/tasks/summarize/", json={"content": "live"}).json()["task_id"]
        pipeline.claim(task_id)
        sync_store.set_progress(task_id, pipeline.tokens[task_id], 50, "halfway")
        sync_store.complete(task_id, "consumer-1", pipeline.tokens[task_id], "done", "offline")
        events = read_events(lines, 4, skip="ping")  # a keep-alive may come between the changes
        pings = read_events(lines, 1)

    assert [(n, e.get("from"), e.get("to")) for n, e in events] == [
        ("transition", "", "PENDING"), ("transition", "PENDING", "ACTIVE"), ("progress", None, None),
        ("transition", "ACTIVE", "COMPLETED"),
    ]  # fmt: skip
    assert all(e["task_id"] == task_id and e["at"] > 0 for _, e in events)
    assert events[0][1]["counters"] == {"submitted": 1} and events[3][1]["counters"] == {"completed": 1}
    assert (events[2][1]["progress"], events[2][1]["current_step"]) == (50, "halfway")
    assert pings[0][0] == "ping" and pings[0][1]["at"] > events[3][1]["at"]


def test_a_client_that_leaves_ends_its_subscription(live_server: str, sync_store: TaskStore) -> None:
    def subscribers() -> int:
        return int(dict(sync_store.r.pubsub_numsub(sync_store.keys.events))[sync_store.keys.events])

    with httpx.stream("GET", f"{live_server}/api/v1/queues/status/stream", timeout=10) as stream:
        lines = stream.iter_lines()  # held: dropping it would close the connection at once
        assert read_events(lines, 1)[0][0] == "snapshot"
        assert subscribers() == 1
    deadline = time.monotonic() + 5
    while subscribers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscribers() == 0


# --- /queues/throughput ---------------------------------------------------------------------------
async def test_throughput_history_holds_what_finished_before_the_reader_came(
    client: httpx.AsyncClient, pipeline: Pipeline, real_redis: redis.Redis
) -> None:
    ids = [await submit(client, f"text {i}") for i in range(5)]
    for task_id in ids[:3]:
        pipeline.complete(task_id)
    pipeline.fail(ids[3], State.DLQ)
    pipeline.fail(ids[4], State.FAILED)

    body = (await client.get("/api/v1/queues/throughput")).json()

    seconds, minutes = body["seconds"], body["minutes"]
    assert len(seconds) == len(minutes) == 60
    assert [b["start"] for b in seconds] == [seconds[0]["start"] + 1000 * i for i in range(60)]
    assert [b["start"] for b in minutes] == [minutes[0]["start"] + 60_000 * i for i in range(60)]
    assert seconds[-1]["start"] <= body["now"] < seconds[-1]["start"] + 1000
    assert minutes[-1]["start"] <= body["now"] < minutes[-1]["start"] + 60_000
    for ring in (seconds, minutes):
        assert (sum(b["completed"] for b in ring), sum(b["failed"] for b in ring)) == (3, 2)
    redis_now = real_redis.time()
    assert abs(body["now"] - (redis_now[0] * 1000 + redis_now[1] // 1000)) < 5000, "the server's clock"


async def test_throughput_history_is_zeros_on_a_fresh_deployment(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/queues/throughput")).json()
    assert {b["completed"] + b["failed"] for b in body["seconds"] + body["minutes"]} == {0}
