"""Submit routes built from the task-type registry: each type's own request schema, its checks at
submit (422 naming the field, 413, 422 provider_required), its params stored and shown, a JSON
result shown as JSON, and the listing of the types."""

from __future__ import annotations

import json

import httpx
import pytest
import redis
from pydantic import BaseModel

import tasktypes
from api.main import create_app
from core.settings import Settings
from tasktypes.base import Content, TaskType
from tests.api.conftest import Pipeline, serve

pytestmark = pytest.mark.anyio

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name"]}  # fmt: skip


def problem(response: httpx.Response) -> tuple[int, str, list[str]]:
    """(status, code, the fields the 422 names)."""
    body = response.json()
    fields = [".".join(str(p) for p in d["loc"]) for d in body.get("detail", [])]
    return response.status_code, body["code"], fields


# --- the registry through the API ---------------------------------------------------------------
async def test_task_types_lists_each_type_with_its_input_schema(api: httpx.AsyncClient) -> None:
    types = {t["name"]: t for t in (await api.get("/api/v1/task-types")).json()}
    assert {"summarize", "translate", "extract", "chat"} <= types.keys()
    assert types["translate"]["input_schema"]["required"] == ["content", "target_language"]
    assert "schema" in types["extract"]["input_schema"]["properties"], "the alias is the public name"
    assert (types["extract"]["result_format"], types["extract"]["long_input"]) == ("json", "refuse")
    assert (types["summarize"]["result_format"], types["summarize"]["answers_offline"]) == ("text", True)
    assert types["chat"]["submit_path"] == "/api/v1/tasks/chat/" and all(t["available"] for t in types.values())


async def test_offline_the_types_without_an_offline_answer_are_unavailable(client: httpx.AsyncClient) -> None:
    types = {t["name"]: t["available"] for t in (await client.get("/api/v1/task-types")).json()}
    assert types["summarize"] and not types["translate"] and not types["extract"] and not types["chat"]


def test_each_type_has_its_own_request_schema_in_openapi() -> None:
    paths = create_app().openapi()["paths"]
    refs = {name: paths[f"/api/v1/tasks/{name}/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            for name in ("summarize", "translate", "extract", "chat")}  # fmt: skip
    assert len({json.dumps(r) for r in refs.values()}) == 4
    assert "ChatBulkCreate" in json.dumps(paths["/api/v1/tasks/chat/bulk"]["post"]["requestBody"])


async def test_an_unknown_type_is_a_404_naming_the_types(api: httpx.AsyncClient) -> None:
    for path in ("/api/v1/tasks/poem/", "/api/v1/tasks/poem", "/api/v1/tasks/poem/bulk"):
        response = await api.post(path, json={"content": "x"})
        assert problem(response)[:2] == (404, "unknown_task_type"), path
        assert "summarize" in response.json()["message"]


# --- translate ----------------------------------------------------------------------------------
async def test_translate_params_are_stored_and_shown(api: httpx.AsyncClient) -> None:
    body = {"content": "Bonjour.", "target_language": "English", "source_language": "French"}
    accepted = await api.post("/api/v1/tasks/translate/", json=body)
    assert accepted.status_code == 202 and accepted.json()["task_type"] == "translate"
    task = (await api.get(accepted.headers["Location"])).json()
    assert task["content"] == "Bonjour."
    assert task["params"] == {"target_language": "English", "source_language": "French"}


async def test_translate_without_target_language_is_a_422_naming_it(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/tasks/translate/", json={"content": "Bonjour."})
    assert problem(response) == (422, "validation_error", ["body.target_language"])


async def test_translate_under_the_offline_provider_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/tasks/translate/", json={"content": "Hi.", "target_language": "French"})
    assert problem(response)[:2] == (422, "provider_required")
    assert "OPENROUTER_API_KEY" in response.json()["message"]
    assert (await client.get("/api/v1/tasks/")).json()["items"] == [], "nothing stored"


async def test_summarize_is_as_it_was(client: httpx.AsyncClient) -> None:
    accepted = await client.post("/api/v1/tasks/summarize/", json={"content": "Some text."})
    assert accepted.status_code == 202
    task = (await client.get(accepted.headers["Location"])).json()
    assert (task["task_type"], task["content"], task["params"]) == ("summarize", "Some text.", None)


# --- extract ------------------------------------------------------------------------------------
async def test_extract_stores_the_schema(api: httpx.AsyncClient) -> None:
    accepted = await api.post("/api/v1/tasks/extract/", json={"content": "Ada, 36.", "schema": SCHEMA})
    assert accepted.status_code == 202
    assert (await api.get(accepted.headers["Location"])).json()["params"] == {"schema": SCHEMA}


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "object", "properties": {"a": {"type": "nonsense"}}}, "not a valid JSON Schema"),
        ({"type": "array"}, "must describe a JSON object"),
        ("not an object", "valid dictionary"),
    ],
)
async def test_extract_refuses_a_bad_schema_naming_it(api: httpx.AsyncClient, schema: object, says: str) -> None:
    response = await api.post("/api/v1/tasks/extract/", json={"content": "x", "schema": schema})
    assert problem(response) == (422, "validation_error", ["body.schema"])
    assert says in response.json()["message"]


async def test_extract_refuses_a_schema_over_the_limit(api: httpx.AsyncClient) -> None:
    huge = {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(2000)}}
    response = await api.post("/api/v1/tasks/extract/", json={"content": "x", "schema": huge})
    assert problem(response) == (422, "validation_error", ["body.schema"])
    assert "EXTRACT_SCHEMA_MAX_CHARS" in response.json()["message"]


async def test_extract_longer_than_one_call_is_a_413(api: httpx.AsyncClient, networked: Settings) -> None:
    content = "word " * (networked.chunk_chars // 5 + 10)
    response = await api.post("/api/v1/tasks/extract/", json={"content": content, "schema": SCHEMA})
    assert problem(response)[:2] == (413, "input_too_long")
    assert "CHUNK_CHARS" in response.json()["message"]


async def test_a_json_result_is_shown_as_json(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    accepted = await api.post("/api/v1/tasks/extract/", json={"content": "Ada, 36.", "schema": SCHEMA})
    task_id = accepted.json()["task_id"]
    pipeline.claim(task_id)
    pipeline.store.complete(task_id, pipeline.consumer_id, pipeline.tokens[task_id], '{"name": "Ada"}', "openrouter")
    task = (await api.get(f"/api/v1/tasks/{task_id}")).json()
    assert task["result"] == {"name": "Ada"}
    listed = (await api.get("/api/v1/tasks/")).json()["items"]
    assert listed[0]["result"] == {"name": "Ada"}


# --- chat ---------------------------------------------------------------------------------------
CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]}


async def test_chat_with_an_allowed_model_is_accepted(api: httpx.AsyncClient, networked: Settings) -> None:
    body = {**CHAT, "model": "backup/model", "temperature": 0.2, "max_tokens": 100}
    accepted = await api.post("/api/v1/tasks/chat/", json=body)
    assert accepted.status_code == 202, accepted.text
    task = (await api.get(accepted.headers["Location"])).json()
    assert task["content"] == "Hello?", "a list shows the last user message"
    assert task["params"] == body


async def test_a_chat_message_of_parts_without_text_is_listed_by_what_it_is(api: httpx.AsyncClient) -> None:
    """Found by the schemathesis run: parts without text (an image) made a blank `content`."""
    parts = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, {"type": "text", "text": " "}]
    accepted = await api.post("/api/v1/tasks/chat/", json={"messages": [{"role": "user", "content": parts}]})
    assert accepted.status_code == 202, accepted.text
    task = (await api.get(accepted.headers["Location"])).json()
    assert task["content"] == "(user message without text)"


async def test_chat_with_a_model_not_allowed_is_a_422(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/tasks/chat/", json={**CHAT, "model": "someone/expensive"})
    assert problem(response) == (422, "validation_error", ["body.model"])
    assert "CHAT_ALLOWED_MODELS" in response.json()["message"]


async def test_chat_max_tokens_over_the_cap_is_a_422(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/tasks/chat/", json={**CHAT, "max_tokens": 1_000_000})
    assert problem(response) == (422, "validation_error", ["body.max_tokens"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "body.messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "body.messages.0.role"),
        ({"messages": [{"role": "user", "content": []}]}, "body.messages.0.content"),
        ({**CHAT, "stream": True}, "body.stream"),
        ({**CHAT, "response_format": {"type": "yaml"}}, "body.response_format"),
    ],
)
async def test_chat_refuses_what_it_cannot_run(api: httpx.AsyncClient, body: dict[str, object], field: str) -> None:
    status, code, fields = problem(await api.post("/api/v1/tasks/chat/", json=body))
    assert (status, code) == (422, "validation_error") and field in fields


async def test_bulk_names_the_item_and_field_and_stores_nothing(api: httpx.AsyncClient) -> None:
    items = [{"content": "Un.", "target_language": "English"}, {"content": "Deux."}]
    response = await api.post("/api/v1/tasks/translate/bulk", json={"items": items})
    assert problem(response) == (422, "validation_error", ["body.items.1.target_language"])
    chats = {"items": [CHAT, {**CHAT, "model": "nope/nope"}]}
    assert problem(await api.post("/api/v1/tasks/chat/bulk", json=chats)) == (
        422, "validation_error", ["body.items.1.model"])  # fmt: skip
    assert (await api.get("/api/v1/tasks/")).json()["items"] == []
    good = await api.post("/api/v1/tasks/translate/bulk", json={"items": items[:1] * 3})
    assert good.status_code == 202 and len(good.json()["items"]) == 3


# --- hostile input in the free-form fields --------------------------------------------------------
SURROGATE = "a\\ud800b"  # a lone surrogate, as JSON writes it: no UTF-8 encoding exists, Redis cannot store it


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("chat", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "%s"}]}]}',
         "body.messages.0.content"),
        ("chat", '{"messages": [{"role": "user", "content": "Hi", "name": "%s"}]}', "body.messages.0"),
        ("chat", '{"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "text", "x": "%s"}}',
         "body.response_format"),
        ("extract", '{"content": "Ada.", "schema": {"type": "object", "description": "%s"}}', "body.schema"),
        ("extract", '{"content": "Ada.", "schema": {"type": "object", "properties": {"%s": {}}}}', "body.schema"),
    ],
    ids=["chat-content-part", "chat-message-field", "chat-response-format", "extract-schema", "extract-schema-key"],
)  # fmt: skip
async def test_a_lone_surrogate_in_a_free_form_field_is_a_422_naming_it(
    api: httpx.AsyncClient, real_redis: redis.Redis, path: str, body: str, field: str
) -> None:
    """Such a body once reached Redis, whose script refused it: a 500, where text fields give a 422."""
    response = await api.post(f"/api/v1/tasks/{path}/", content=(body % SURROGATE).encode(),
                              headers={"content-type": "application/json"})  # fmt: skip
    status, code, fields = problem(response)
    assert (status, code) == (422, "validation_error") and field in fields, response.text
    assert "lone surrogate" in response.json()["message"]
    assert (await api.get("/api/v1/tasks/")).json()["items"] == [], "nothing stored"


async def test_a_lone_surrogate_in_a_loaded_types_own_field_is_a_422(
    networked: Settings, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A type from TASK_TYPE_MODULES may take a plain str, which JSON lets hold a lone surrogate
    that Redis cannot store: the submit is refused as a 422, never a 500, and nothing is stored."""

    class NoteCreate(BaseModel):
        content: Content
        note: str

    class Noted(TaskType):
        name = "noted"
        description = "test"
        Create = NoteCreate
        answers_offline = True

    monkeypatch.setattr(tasktypes, "_types", dict(tasktypes._types))
    tasktypes.register(Noted())
    async for api in serve(create_app(networked)):
        response = await api.post("/api/v1/tasks/noted/", content=b'{"content": "x", "note": "a\\ud800b"}',
                                  headers={"content-type": "application/json"})  # fmt: skip
        assert problem(response) == (422, "validation_error", ["body"])
        assert "lone surrogate" in response.json()["message"]
        assert (await api.post("/api/v1/tasks/noted/", json={"content": "x", "note": "fine"})).status_code == 202
