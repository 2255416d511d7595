"""GET, DELETE, retry and cancel of one task, and the requeue-orphaned sweep."""

from __future__ import annotations

import uuid

import httpx
import pytest

from core.states import State
from core.store import TaskStore
from tests.api.conftest import Pipeline, state_of, submit

pytestmark = pytest.mark.anyio

PUBLIC_FIELDS = {
    "task_id", "task_type", "state", "priority", "content", "params", "result", "provider", "retry_count",
    "max_retries", "last_error", "error_type", "worker", "created_at", "updated_at", "started_at", "finished_at",
    "due_at", "attempts", "progress", "current_step", "model", "usage", "timings", "history", "errors", "actions",
}  # fmt: skip


async def test_get_pending_task_has_nulls_for_not_yet(client: httpx.AsyncClient) -> None:
    task_id = await submit(client, "Some text.")

    body = (await client.get(f"/api/v1/tasks/{task_id}")).json()

    assert set(body) == PUBLIC_FIELDS
    assert body["task_id"] == task_id
    assert body["state"] == "PENDING"
    assert body["priority"] == 5, "submitted without one: the default"
    assert body["content"] == "Some text."
    assert body["created_at"] == body["updated_at"] > 0
    for field in ("result", "provider", "last_error", "error_type", "worker", "started_at", "finished_at", "due_at"):
        assert body[field] is None, field
    for field in ("current_step", "model", "usage"):
        assert body[field] is None, field
    assert (body["attempts"], body["progress"], body["errors"]) == (0, 0, [])
    assert body["actions"] == ["cancel", "delete"]
    assert body["timings"] == {"queued_ms": None, "run_ms": None, "total_ms": None}
    assert body["history"] == [
        {"at": body["created_at"], "from": "", "to": "PENDING", "worker": None, "error": None, "error_type": None}
    ]


async def test_get_active_task_shows_worker_but_not_attempt_token(
    client: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    task_id = await submit(client)
    pipeline.claim(task_id)

    response = await client.get(f"/api/v1/tasks/{task_id}")

    body = response.json()
    assert body["state"] == "ACTIVE"
    assert body["worker"] == "consumer-1"
    assert body["started_at"] > 0
    assert pipeline.tokens[task_id] not in response.text
    assert "attempt" not in body and "consumer" not in body


async def test_get_completed_task_has_result(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    task_id = await submit(client)
    pipeline.complete(task_id)

    body = (await client.get(f"/api/v1/tasks/{task_id}")).json()

    assert (body["state"], body["result"], body["provider"]) == ("COMPLETED", "a summary", "offline")
    assert body["finished_at"] >= body["started_at"] > 0


async def test_get_scheduled_task_has_due_time_and_error(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    task_id = await submit(client)
    pipeline.schedule(task_id, delay=60)

    body = (await client.get(f"/api/v1/tasks/{task_id}")).json()

    assert body["state"] == "SCHEDULED"
    assert body["due_at"] >= body["updated_at"] + 59_000
    assert (body["retry_count"], body["last_error"], body["error_type"]) == (1, "timeout", "transient")


async def test_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    unknown = str(uuid.uuid4())

    response = await client.get(f"/api/v1/tasks/{unknown}")

    assert response.status_code == 404
    assert response.json() == {"code": "task_not_found", "message": f"task {unknown} not found"}


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "0c5e0a2e-7b1f-4c1e-9d2a-3f0e2b7c9a1z", "x:y"])
async def test_non_uuid_task_id_is_404_task_not_found(client: httpx.AsyncClient, bad_id: str) -> None:
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/retry"), ("POST", "/cancel")):
        response = await client.request(method, f"/api/v1/tasks/{bad_id}{suffix}")
        assert response.status_code == 404, (method, suffix)
        assert response.json()["code"] == "task_not_found"


async def test_non_uuid_id_body(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/tasks/not-a-uuid")).json()

    assert body == {"code": "task_not_found", "message": "task not-a-uuid not found"}


async def test_upper_case_id_finds_the_task(client: httpx.AsyncClient) -> None:
    task_id = await submit(client)

    response = await client.get(f"/api/v1/tasks/{task_id.upper()}")

    assert response.status_code == 200
    assert response.json()["task_id"] == task_id


async def test_delete_removes_the_task(client: httpx.AsyncClient) -> None:
    task_id = await submit(client)

    response = await client.delete(f"/api/v1/tasks/{task_id}")

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 404
    status = (await client.get("/api/v1/queues/status")).json()
    assert status["queues"]["primary"] == 0
    assert status["states"]["PENDING"] == 0


async def test_delete_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete(f"/api/v1/tasks/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


async def test_delete_active_is_409_naming_the_state(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    task_id = await submit(client)
    pipeline.claim(task_id)

    response = await client.delete(f"/api/v1/tasks/{task_id}")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "invalid_transition"
    assert "ACTIVE" in body["message"]
    assert await state_of(client, task_id) == "ACTIVE"


@pytest.mark.parametrize("target", [State.FAILED, State.DLQ])
async def test_retry_redrives_a_failed_or_dead_task(
    client: httpx.AsyncClient, pipeline: Pipeline, target: State
) -> None:
    task_id = await submit(client)
    pipeline.fail(task_id, target)

    response = await client.post(f"/api/v1/tasks/{task_id}/retry")

    assert response.status_code == 202
    body = response.json()
    assert (body["task_id"], body["state"], body["retry_count"], body["finished_at"]) == (task_id, "PENDING", 0, None)
    status = (await client.get("/api/v1/queues/status")).json()
    assert status["queues"]["retry"] == 1
    assert status["states"][target.value] == 0


async def test_retry_a_cancelled_task(client: httpx.AsyncClient) -> None:
    task_id = await submit(client)
    assert (await client.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 200

    response = await client.post(f"/api/v1/tasks/{task_id}/retry")

    assert response.status_code == 202
    assert response.json()["state"] == "PENDING"


async def bring_to(client: httpx.AsyncClient, pipeline: Pipeline, task_id: str, state: str) -> None:
    """Move a freshly submitted (PENDING) task into `state` through the real transitions."""
    steps = {
        "active": pipeline.claim, "completed": pipeline.complete, "failed": pipeline.fail,
        "scheduled": pipeline.schedule,
    }
    if state in steps:
        steps[state](task_id)
    elif state == "cancelled":
        assert (await client.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 200


@pytest.mark.parametrize("setup", ["pending", "active", "completed", "scheduled"])
async def test_retry_refused_outside_failed_dlq_cancelled(
    client: httpx.AsyncClient, pipeline: Pipeline, setup: str
) -> None:
    task_id = await submit(client)
    await bring_to(client, pipeline, task_id, setup)

    response = await client.post(f"/api/v1/tasks/{task_id}/retry")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "invalid_transition"
    assert setup.upper() in body["message"]


async def test_retry_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/api/v1/tasks/{uuid.uuid4()}/retry")

    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


@pytest.mark.parametrize("scheduled", [False, True], ids=["pending", "scheduled"])
async def test_cancel_a_waiting_task(client: httpx.AsyncClient, pipeline: Pipeline, scheduled: bool) -> None:
    task_id = await submit(client)
    if scheduled:
        pipeline.schedule(task_id)

    response = await client.post(f"/api/v1/tasks/{task_id}/cancel")

    assert response.status_code == 200
    body = response.json()
    assert (body["task_id"], body["state"], body["due_at"]) == (task_id, "CANCELLED", None)
    assert body["finished_at"] > 0
    depths = (await client.get("/api/v1/queues/status")).json()["queues"]
    assert (depths["primary"], depths["scheduled"]) == (0, 0)


@pytest.mark.parametrize("setup", ["completed", "failed", "cancelled"])
async def test_cancel_refused_once_finished(
    client: httpx.AsyncClient, pipeline: Pipeline, setup: str
) -> None:
    task_id = await submit(client)
    await bring_to(client, pipeline, task_id, setup)

    response = await client.post(f"/api/v1/tasks/{task_id}/cancel")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "invalid_transition"
    assert setup.upper() in body["message"]


async def test_cancel_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/api/v1/tasks/{uuid.uuid4()}/cancel")

    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


async def test_requeue_orphaned_recovers_a_dead_consumers_task(
    client: httpx.AsyncClient, pipeline: Pipeline, sync_store: TaskStore
) -> None:
    task_id = await submit(client)
    sync_store.beat("consumer-1", {"pid": 1}, ttl=30)
    pipeline.claim(task_id)
    sync_store.leave("consumer-1")  # its heartbeat is gone; its in-flight task is an orphan

    response = await client.post("/api/v1/tasks/requeue-orphaned")

    assert response.status_code == 200
    assert response.json() == {"recovered": 1}
    body = (await client.get(f"/api/v1/tasks/{task_id}")).json()
    assert (body["state"], body["retry_count"], body["error_type"]) == ("PENDING", 1, "worker_lost")
    assert (await client.post("/api/v1/tasks/requeue-orphaned")).json() == {"recovered": 0}


async def test_requeue_orphaned_leaves_live_consumers_alone(
    client: httpx.AsyncClient, pipeline: Pipeline, sync_store: TaskStore
) -> None:
    task_id = await submit(client)
    sync_store.beat("consumer-1", {"pid": 1}, ttl=30)
    pipeline.claim(task_id)

    response = await client.post("/api/v1/tasks/requeue-orphaned")

    assert response.json() == {"recovered": 0}
    assert await state_of(client, task_id) == "ACTIVE"
