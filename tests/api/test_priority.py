"""Priorities through the API (issue 18), on the session's real Redis: every type's submit and bulk
items take `priority` (0-9, default 5) outside the type's own input; the task shows it; the task
list filters by it; the queue status reports pending work per level and the keys with the most."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from pydantic import BaseModel

import tasktypes
from api.main import create_app
from api.routes.submit import body_model
from core.settings import Settings
from core.store import TaskStore
from core.task import Task
from tasktypes.base import Content, TaskType
from tests.api.auth_helpers import ADMIN, ALICE, BOB, keyed
from tests.api.conftest import Pipeline, serve
from tests.api.test_listing import walk

pytestmark = pytest.mark.anyio

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
INPUTS: dict[str, dict[str, Any]] = {
    "summarize": {"content": "A text worth summarizing."},
    "translate": {"content": "Bonjour", "target_language": "English"},
    "extract": {"content": "Ada, 36.", "schema": SCHEMA},
    "chat": {"messages": [{"role": "user", "content": "Name a prime."}], "temperature": 0.2},
}


@pytest.fixture
async def keyed_api(settings: Settings, real_redis: redis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async for c in serve(create_app(keyed(settings))):
        yield c


async def submit(client: httpx.AsyncClient, priority: int | None = None, headers: dict[str, str] | None = None,
                 task_type: str = "summarize") -> str:  # fmt: skip
    body = INPUTS[task_type] | ({} if priority is None else {"priority": priority})
    response = await client.post(f"/api/v1/tasks/{task_type}/", json=body, headers=headers)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


# --- submit -------------------------------------------------------------------------------------
@pytest.mark.parametrize("task_type", sorted(INPUTS))
async def test_every_type_takes_a_priority_stored_on_the_task_not_in_its_params(
    api: httpx.AsyncClient, sync_store: TaskStore, task_type: str
) -> None:
    task_id = await submit(api, 2, task_type=task_type)
    default = await submit(api, task_type=task_type)

    shown = (await api.get(f"/api/v1/tasks/{task_id}")).json()
    assert shown["priority"] == 2 and (await api.get(f"/api/v1/tasks/{default}")).json()["priority"] == 5
    assert "priority" not in (shown["params"] or {})
    stored = sync_store.get(task_id)
    assert stored.priority == 2 and "priority" not in json.loads(stored.params or "{}")
    # The worker rebuilds the type's own input from what was stored: priority must not be in it
    # (chat's input refuses unknown fields).
    task_type_ = tasktypes.get(task_type)
    assert task_type_ is not None
    task_type_.input_of(stored.content, json.loads(stored.params or "{}"))


@pytest.mark.parametrize("task_type", sorted(INPUTS))
async def test_a_bulk_stores_each_items_own_priority(
    api: httpx.AsyncClient, sync_store: TaskStore, task_type: str
) -> None:
    items = [INPUTS[task_type] | {"priority": p} for p in (0, 9)] + [INPUTS[task_type]]
    response = await api.post(f"/api/v1/tasks/{task_type}/bulk", json={"items": items})

    assert response.status_code == 202, response.text
    ids = [item["task_id"] for item in response.json()["items"]]
    assert [sync_store.get(task_id).priority for task_id in ids] == [0, 9, 5]
    assert all("priority" not in json.loads(sync_store.get(i).params or "{}") for i in ids)


@pytest.mark.parametrize("bad", [-1, 10, 2.5, 5.0, "5", True, None, [1]])
async def test_a_priority_that_is_no_integer_from_0_to_9_is_a_422_naming_it(
    api: httpx.AsyncClient, bad: object
) -> None:
    single = await api.post("/api/v1/tasks/chat/", json=INPUTS["chat"] | {"priority": bad})
    bulk = await api.post("/api/v1/tasks/translate/bulk",
                          json={"items": [INPUTS["translate"], INPUTS["translate"] | {"priority": bad}]})  # fmt: skip

    for response, loc in ((single, ["body", "priority"]), (bulk, ["body", "items", 1, "priority"])):
        assert (response.status_code, response.json()["code"]) == (422, "validation_error"), response.text
        assert [d["loc"] for d in response.json()["detail"]] == [loc]
    assert (await api.get("/api/v1/tasks/")).json()["items"] == [], "nothing stored"


async def test_the_input_schema_stays_the_types_own_and_the_openapi_body_has_priority(
    api: httpx.AsyncClient,
) -> None:
    types = {t["name"]: t for t in (await api.get("/api/v1/task-types")).json()}
    assert all("priority" not in t["input_schema"]["properties"] for t in types.values())

    schema = (await api.get("/openapi.json")).json()
    body = schema["components"]["schemas"]["TranslateCreate"]
    assert body["properties"]["priority"] | {"description": ""} == {
        "type": "integer", "minimum": 0, "maximum": 9, "default": 5, "title": "Priority", "description": "",
    }  # fmt: skip
    assert body["required"] == ["content", "target_language"]


def test_a_type_whose_input_has_its_own_priority_is_refused_when_routes_are_built(
    networked: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    class UrgentCreate(BaseModel):
        content: Content
        priority: str = "high"

    class Urgent(TaskType):
        name = "urgent"
        description = "test"
        Create = UrgentCreate
        answers_offline = True

    with pytest.raises(ValueError, match="'urgent'.*UrgentCreate has a 'priority' field"):
        body_model(Urgent())
    monkeypatch.setattr(tasktypes, "_types", dict(tasktypes._types))
    tasktypes.register(Urgent())
    with pytest.raises(ValueError, match="'urgent'"):
        create_app(networked)


# --- the task list ------------------------------------------------------------------------------
async def test_the_list_filters_by_priority_alone_and_with_state_and_type(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    ones = [await submit(api, 1) for _ in range(5)]
    pipeline.complete(ones[0])  # before a more urgent task comes: it is next in line
    others = [await submit(api, p) for p in (0, 5, 9)]
    translated = await submit(api, 1, task_type="translate")

    pages = await walk(api, "/api/v1/tasks/", priority=1, limit=2)
    assert [t for page in pages for t in page] == [translated, *ones[::-1]]
    assert await walk(api, "/api/v1/tasks/", priority=1, status="completed") == [[ones[0]]]
    assert await walk(api, "/api/v1/tasks/", priority=1, task_type="translate") == [[translated]]
    pending = await walk(api, "/api/v1/tasks/", priority=1, status="pending", task_type="summarize")
    assert pending == [ones[:0:-1]]
    assert await walk(api, "/api/v1/tasks/", priority=0) == [[others[0]]]
    assert await walk(api, "/api/v1/tasks/", priority=7) == [[]]


@pytest.mark.parametrize("bad", ["10", "-1", "x", "1.5", ""])
async def test_a_list_priority_out_of_range_is_a_422(api: httpx.AsyncClient, bad: str) -> None:
    response = await api.get("/api/v1/tasks/", params={"priority": bad})
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert response.json()["detail"][0]["loc"] == ["query", "priority"]


async def test_a_submit_key_lists_its_own_tasks_of_one_priority(keyed_api: httpx.AsyncClient) -> None:
    alices = [await submit(keyed_api, p, ALICE) for p in (3, 3, 4)]
    bobs = await submit(keyed_api, 3, BOB)

    mine = (await keyed_api.get("/api/v1/tasks/", params={"priority": 3}, headers=ALICE)).json()["items"]
    assert [t["task_id"] for t in mine] == alices[1::-1]
    every = (await keyed_api.get("/api/v1/tasks/", params={"priority": 3}, headers=ADMIN)).json()["items"]
    assert [t["task_id"] for t in every] == [bobs, *alices[1::-1]]


# --- queue status -------------------------------------------------------------------------------
async def test_the_status_has_pending_work_per_level_and_the_top_owners(
    keyed_api: httpx.AsyncClient, sync_store: TaskStore
) -> None:
    for priority, headers in ((0, ALICE), (0, ALICE), (7, ALICE), (7, BOB), (5, ADMIN)):
        await submit(keyed_api, priority, headers)
    pipeline = Pipeline(sync_store)
    first = (await keyed_api.get("/api/v1/tasks/", params={"priority": 0}, headers=ALICE)).json()["items"]
    pipeline.claim(first[-1]["task_id"])  # the oldest of the most urgent level goes first

    body = (await keyed_api.get("/api/v1/queues/status", headers=ADMIN)).json()

    assert body["queues"]["primary"] == 4
    levels = {level["priority"]: (level["primary"], level["retry"]) for level in body["priorities"]}
    assert [level["priority"] for level in body["priorities"]] == list(range(10))
    assert levels == {p: (0, 0) for p in range(10)} | {0: (1, 0), 5: (1, 0), 7: (2, 0)}
    assert body["top_owners"][0] == {"owner": "alice", "backlog": 2, "active": 1}
    others = sorted(body["top_owners"][1:], key=lambda o: o["owner"])
    assert others == [{"owner": "bob", "backlog": 1, "active": 0}, {"owner": "ops", "backlog": 1, "active": 0}]


async def test_without_keys_the_one_owner_is_the_empty_string(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/tasks/summarize/", json={"content": "x", "priority": 4})
    assert response.status_code == 202

    body = (await client.get("/api/v1/queues/status")).json()
    assert body["top_owners"] == [{"owner": "", "backlog": 1, "active": 0}]
    assert body["priorities"][4] == {"priority": 4, "primary": 1, "retry": 0}


async def test_the_status_names_at_most_ten_owners(client: httpx.AsyncClient, sync_store: TaskStore) -> None:
    # Twelve owners with 1 … 12 pending tasks, stored as twelve keys' submits would store them.
    for n in range(12):
        for _ in range(n + 1):
            sync_store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x", owner=f"key{n:02}"))

    owners = (await client.get("/api/v1/queues/status")).json()["top_owners"]

    assert [(o["owner"], o["backlog"]) for o in owners] == [(f"key{n:02}", n + 1) for n in range(11, 1, -1)]
