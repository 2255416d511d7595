"""Per task type through the API, on the session's real Redis: `?task_type=` on the task list and
the DLQ view, re-driving one type's dead tasks, `by_type` in the statistics and the per-type
series of /metrics, each after real submits and transitions."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import redis

from api.main import create_app
from api.metrics import TYPE_EVENTS
from api.schemas import TypeFigures
from core.settings import Settings
from core.states import State
from core.store import TaskStore
from core.task import Task
from tests.api.auth_helpers import ADMIN, ALICE, BOB, keyed
from tests.api.conftest import Pipeline, serve
from tests.api.test_listing import walk
from tests.api.test_metrics import samples

pytestmark = pytest.mark.anyio
BODIES = {
    "summarize": {"content": "A text worth summarizing."},
    "translate": {"content": "Bonjour", "target_language": "en"},
}


async def submit(client: httpx.AsyncClient, task_type: str, headers: dict[str, str] | None = None) -> str:
    response = await client.post(f"/api/v1/tasks/{task_type}/", json=BODIES[task_type], headers=headers)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def interleaved(client: httpx.AsyncClient, count: int) -> dict[str, list[str]]:
    made: dict[str, list[str]] = {"summarize": [], "translate": []}
    for n in range(2 * count):
        task_type = ("summarize", "translate")[n % 2]
        made[task_type].append(await submit(client, task_type))
    return made


def ids(page: dict[str, object]) -> list[str]:
    return [item["task_id"] for item in page["items"]]  # type: ignore[attr-defined]


# --- GET /api/v1/tasks/?task_type= ----------------------------------------------------------------
async def test_a_type_listing_has_full_pages_of_that_type_and_walks_each_task_once(api: httpx.AsyncClient) -> None:
    made = await interleaved(api, 30)

    for task_type, created in made.items():
        pages = await walk(api, "/api/v1/tasks/", task_type=task_type, limit=20)
        assert [len(p) for p in pages] == [20, 10], task_type
        seen = [task_id for page in pages for task_id in page]
        assert sorted(seen) == sorted(created) and len(set(seen)) == 30
    listed = (await api.get("/api/v1/tasks/", params={"task_type": "translate", "limit": 20})).json()["items"]
    assert {item["task_type"] for item in listed} == {"translate"}
    stamps = [item["created_at"] for item in listed]
    assert stamps == sorted(stamps, reverse=True), "newest first"


@pytest.mark.parametrize("path", ["/api/v1/tasks/", "/api/v1/queues/dlq"])
async def test_an_unregistered_type_is_a_422_naming_task_type(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path, params={"task_type": "translat"})

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"][0]["loc"] == ["query", "task_type"]
    assert "task_type" in body["message"] and "'translat'" in body["message"] and "translate" in body["message"]


async def test_an_empty_task_type_is_no_filter(api: httpx.AsyncClient) -> None:
    made = await interleaved(api, 2)
    listed = ids((await api.get("/api/v1/tasks/", params={"task_type": ""})).json())
    assert sorted(listed) == sorted(made["summarize"] + made["translate"])


async def test_status_and_type_together(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    made = await interleaved(api, 6)
    order = [made[t][n] for n in range(6) for t in ("summarize", "translate")]  # submit order: claim order
    for task_id in order[:6]:
        pipeline.complete(task_id)

    completed = await walk(api, "/api/v1/tasks/", status="completed", task_type="translate", limit=2)
    pending = await walk(api, "/api/v1/tasks/", status="PENDING", task_type="summarize", limit=2)

    assert [len(p) for p in completed] == [2, 1]
    assert sorted(sum(completed, [])) == sorted(made["translate"][:3])
    assert [len(p) for p in pending] == [2, 1]
    assert sorted(sum(pending, [])) == sorted(made["summarize"][3:])


async def test_a_tagged_cursor_is_accepted_and_a_bad_tag_is_422(api: httpx.AsyncClient) -> None:
    made = await interleaved(api, 3)
    first = (await api.get("/api/v1/tasks/", params={"status": "PENDING", "task_type": "translate", "limit": 1})).json()
    cursor = first["next_cursor"]
    assert cursor.count(":") == 2

    rest = await walk(api, "/api/v1/tasks/", status="PENDING", task_type="translate", limit=1, cursor=cursor)
    bad = await api.get("/api/v1/tasks/", params={"cursor": cursor.rpartition(":")[0] + ":owner"})

    assert sorted(ids(first) + sum(rest, [])) == sorted(made["translate"])
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")


async def test_a_submit_keys_listing_by_type_shows_its_own_tasks_only(
    networked: Settings, real_redis: redis.Redis
) -> None:
    async for client in serve(create_app(keyed(networked))):
        alices = {t: [await submit(client, t, ALICE) for _ in range(3)] for t in ("summarize", "translate")}
        bobs = [await submit(client, "translate", BOB) for _ in range(2)]

        own = await walk_as(client, ALICE, task_type="translate", limit=2)
        everyone = await walk_as(client, ADMIN, task_type="translate", limit=10)

        assert [len(p) for p in own] == [2, 1]
        assert sorted(sum(own, [])) == sorted(alices["translate"])
        assert sorted(sum(everyone, [])) == sorted(alices["translate"] + bobs)


async def walk_as(client: httpx.AsyncClient, headers: dict[str, str], **params: str | int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/api/v1/tasks/", params=query, headers=headers)).json()
        pages.append(ids(body))
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_delete_and_purge_leave_no_ghost_in_the_type_listing(
    api: httpx.AsyncClient, pipeline: Pipeline, sync_store: TaskStore, real_redis: redis.Redis
) -> None:
    deleted, dead, kept = [await submit(api, "translate") for _ in range(3)]
    assert (await api.delete(f"/api/v1/tasks/{deleted}")).status_code == 204
    pipeline.fail(dead, State.DLQ, "bad key")
    assert (await api.delete("/api/v1/queues/dlq")).json() == {"deleted": 1}

    listed = ids((await api.get("/api/v1/tasks/", params={"task_type": "translate"})).json())

    assert listed == [kept]
    assert real_redis.zrange(sync_store.keys.type_tasks("translate"), 0, -1) == [kept], "no leak in the index"


# --- the DLQ view and its re-drive --------------------------------------------------------------
async def dead_mix(api: httpx.AsyncClient, pipeline: Pipeline) -> dict[str, list[str]]:
    """Three dead tasks of each type (interleaved) and one of each still pending."""
    made = await interleaved(api, 4)
    for n in range(3):
        for task_type in ("summarize", "translate"):
            pipeline.fail(made[task_type][n], State.DLQ, f"{task_type} is misconfigured")
            time.sleep(0.002)  # distinct times of death (Redis milliseconds), so the order is defined
    return made


async def test_dlq_entries_show_their_type_and_filter_by_it(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    made = await dead_mix(api, pipeline)

    everything = (await api.get("/api/v1/queues/dlq")).json()["items"]
    pages = await walk(api, "/api/v1/queues/dlq", task_type="translate", limit=2)

    assert {(item["task_type"], item["state"]) for item in everything} == {("summarize", "DLQ"), ("translate", "DLQ")}
    assert pages == [[made["translate"][2], made["translate"][1]], [made["translate"][0]]], "most recently dead first"


async def test_requeue_by_type_re_drives_that_type_only(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    made = await dead_mix(api, pipeline)

    response = await api.post("/api/v1/queues/dlq/requeue", json={"task_type": "translate"})

    assert response.json() == {"requeued": 3, "not_dead": []}
    still_dead = ids((await api.get("/api/v1/queues/dlq")).json())
    assert sorted(still_dead) == sorted(made["summarize"][:3])
    for task_id in made["translate"][:3]:
        assert (await api.get(f"/api/v1/tasks/{task_id}")).json()["state"] == "PENDING"
    again = await api.post("/api/v1/queues/dlq/requeue", json={"task_type": "translate"})
    assert again.json() == {"requeued": 0, "not_dead": []}


@pytest.mark.parametrize(
    "body",
    [{"task_type": "nope"}, {"task_type": "translate", "task_ids": []}, {"task_type": 3}],
)
async def test_requeue_with_a_bad_type_is_a_422(api: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await api.post("/api/v1/queues/dlq/requeue", json=body)
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert "task_type" in response.json()["message"] or "task_ids" in response.json()["message"]


# --- statistics and /metrics ----------------------------------------------------------------------
async def per_type_workload(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    """summarize: 3 submitted, 2 completed, 1 retried; translate: 3 submitted, 1 failed, 1 dead."""
    s1, t1, s2, t2, s3, _t3 = [await submit(api, t) for t in ("summarize", "translate") * 3]
    pipeline.complete(s1)
    pipeline.fail(t1, State.FAILED)
    pipeline.complete(s2)
    pipeline.fail(t2, State.DLQ)
    pipeline.schedule(s3)


async def test_statistics_count_per_type(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    await per_type_workload(api, pipeline)

    stats = (await api.get("/api/v1/tasks/statistics/overview")).json()

    by_type = stats["by_type"]
    assert set(by_type) == {"summarize", "translate", "extract", "chat"}, "every registered type, zeros too"
    zero = {name: 0 for name in TYPE_EVENTS}
    summarize = {"submitted": 3, "completed": 2, "retried": 1, "stored": 3, "success_rate": 1.0}
    assert by_type["summarize"] == {**zero, **summarize}
    translate = {"submitted": 3, "failed": 1, "dead": 1, "stored": 3, "success_rate": 0.0}
    assert by_type["translate"] == {**zero, **translate}
    assert by_type["chat"] == {**zero, "stored": 0, "success_rate": None}
    for name in TYPE_EVENTS:
        assert sum(figures[name] for figures in by_type.values()) == stats["totals"].get(name, 0), name


async def test_metrics_count_per_type(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    await per_type_workload(api, pipeline)

    got = samples((await api.get("/metrics")).text)

    def series(task_type: str, event: str) -> float:
        return got[("atf_task_type_events_total", (("event", event), ("task_type", task_type)))]

    assert [series("summarize", e) for e in ("submitted", "completed", "retried", "dead")] == [3, 2, 1, 0]
    assert [series("translate", e) for e in ("submitted", "failed", "dead", "completed")] == [3, 1, 1, 0]
    assert all(series("extract", event) == 0 for event in TYPE_EVENTS), "every registered type from the first scrape"
    assert got[("atf_task_type_tasks", (("task_type", "translate"),))] == 3
    assert got[("atf_task_type_tasks", (("task_type", "chat"),))] == 0
    assert got[("atf_task_events_total", (("event", "submitted"),))] == 6, "the global family is unchanged"


async def test_a_type_no_longer_loaded_still_has_its_figures(api: httpx.AsyncClient, sync_store: TaskStore) -> None:
    """Tasks of a type that was unloaded (TASK_TYPE_MODULES changed) stay counted and listed by Redis."""
    sync_store.create(Task(id=str(uuid.uuid4()), task_type="retired", content="x"))

    by_type = (await api.get("/api/v1/tasks/statistics/overview")).json()["by_type"]
    got = samples((await api.get("/metrics")).text)

    assert (by_type["retired"]["submitted"], by_type["retired"]["stored"]) == (1, 1)
    assert got[("atf_task_type_events_total", (("event", "submitted"), ("task_type", "retired")))] == 1
    assert got[("atf_task_type_tasks", (("task_type", "retired"),))] == 1


def test_the_statistics_schema_has_a_field_per_counted_event() -> None:
    assert set(TypeFigures.model_fields) - {"stored", "success_rate"} == set(TYPE_EVENTS)
