"""POST /api/v1/tasks/summarize: accepted tasks, and every way a submit is refused."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from tests.api.conftest import submit

pytestmark = pytest.mark.anyio

URL = "/api/v1/tasks/summarize/"


@pytest.mark.parametrize("path", ["/api/v1/tasks/summarize/", "/api/v1/tasks/summarize"])
async def test_submit_accepts_and_queues(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json={"content": "Redis is an in-memory data store."})

    assert response.status_code == 202
    body = response.json()
    assert uuid.UUID(body["task_id"]).version == 4
    assert body["state"] == "PENDING"
    assert body["task_type"] == "summarize"
    assert body["created_at"] > 1_600_000_000_000  # epoch milliseconds
    assert response.headers["location"] == f"/api/v1/tasks/{body['task_id']}"

    stored = (await client.get(response.headers["location"])).json()
    assert stored["content"] == "Redis is an in-memory data store."
    assert stored["max_retries"] == 3
    status = (await client.get("/api/v1/queues/status")).json()
    assert status["queues"]["primary"] == 1


async def test_content_at_the_limit_is_accepted_one_more_is_413(client: httpx.AsyncClient) -> None:
    assert (await client.post(URL, json={"content": "x" * 100_000})).status_code == 202

    response = await client.post(URL, json={"content": "x" * 100_001})

    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "content_too_large"
    assert "100000" in body["message"]
    assert (await client.get("/api/v1/queues/status")).json()["queues"]["primary"] == 1


@pytest.mark.parametrize(
    "payload",
    [{}, {"content": ""}, {"content": "   \n\t "}, {"content": 42}, {"content": None}, {"text": "hi"}, ["hi"], "hi"],
    ids=["missing", "empty", "whitespace", "number", "null", "wrong-field", "list", "string"],
)
async def test_invalid_body_is_422_with_code_and_message(client: httpx.AsyncClient, payload: object) -> None:
    response = await client.post(URL, json=payload)

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["message"]
    assert isinstance(body["detail"], list)


@pytest.mark.parametrize("raw", [b'{"content": ', b"not json", b""], ids=["truncated", "garbage", "no-body"])
async def test_malformed_json_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(URL, content=raw, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_whitespace_message_names_the_field(client: httpx.AsyncClient) -> None:
    body = (await client.post(URL, json={"content": "  "})).json()

    assert "content" in body["message"]
    assert "blank" in body["message"]


async def test_log_names_the_task_but_never_the_content(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api")

    task_id = await submit(client, "secret-marker-7c1f in a private document")

    assert task_id in caplog.text
    assert "secret-marker-7c1f" not in caplog.text
