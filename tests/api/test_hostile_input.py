"""Hostile input: oversized, malformed, mistyped, odd characters, traversal. Each gets a 4xx with a
JSON error body, and nothing reaches Redis (the keys under the test's prefix do not change)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis

from api.main import create_app
from core.settings import Settings
from tests.api.conftest import serve, submit

pytestmark = pytest.mark.anyio

SUBMIT = "/api/v1/tasks/summarize/"
BULK = "/api/v1/tasks/summarize/bulk"


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings(redis_url=redis_url, redis_key_prefix=key_prefix, list_page_max=20, max_body_bytes=4096,
                    max_content_chars=1000, bulk_max_items=5)  # fmt: skip


def stored(real_redis: redis.Redis, key_prefix: str) -> dict[str, Any]:
    """Every key under the test's prefix with its type: what a refused request must leave alone."""
    return {key: real_redis.type(key) for key in real_redis.scan_iter(match=f"{key_prefix}*")}


def assert_json_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["message"], str) and body["message"]
    if code:
        assert body["code"] == code, body


BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("malformed JSON", b'{"content": "x"', 422, "validation_error"),
    ("not JSON at all", b"content=hello", 422, "validation_error"),
    ("a JSON list", b'["content"]', 422, "validation_error"),
    ("content as a number", b'{"content": 12345678901234567890123456789}', 422, "validation_error"),
    ("content as an object", b'{"content": {"$gt": ""}}', 422, "validation_error"),
    ("content null", b'{"content": null}', 422, "validation_error"),
    ("blank content", b'{"content": "   \\n\\t "}', 422, "validation_error"),
    ("a NUL byte", b'{"content": "a\\u0000b"}', 422, "validation_error"),
    ("an escape sequence", b'{"content": "red \\u001b[31m text"}', 422, "validation_error"),
    ("a C1 control", b'{"content": "a\\u0085b"}', 422, "validation_error"),
    ("a lone surrogate", b'{"content": "a\\ud800b"}', 422, "validation_error"),
    ("invalid UTF-8", b'{"content": "a\xff\xfeb"}', 400, "bad_request"),
    ("content too long", b'{"content": "' + b"x" * 1001 + b'"}', 413, "content_too_large"),
    ("deeply nested", b'{"content": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, "bad_request"),
]


@pytest.mark.parametrize(("body", "status", "code"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
async def test_a_bad_submit_is_a_json_4xx_and_stores_nothing(
    client: httpx.AsyncClient, real_redis: redis.Redis, key_prefix: str, body: bytes, status: int, code: str
) -> None:
    before = stored(real_redis, key_prefix)
    response = await client.post(SUBMIT, content=body, headers={"content-type": "application/json"})
    assert_json_error(response, status, code)
    assert stored(real_redis, key_prefix) == before


BAD_BULKS: list[tuple[str, Any, int, str]] = [
    ("items not a list", {"items": "x"}, 422, "validation_error"),
    ("no items", {"items": []}, 422, "validation_error"),
    ("too many items", {"items": [{"content": "x"}] * 6}, 413, "too_many_items"),
    ("one bad item among good", {"items": [{"content": "x"}, {"content": "\u0000"}]}, 422, "validation_error"),
    ("one item too long", {"items": [{"content": "x"}, {"content": "y" * 1001}]}, 413, "content_too_large"),
]


@pytest.mark.parametrize(("body", "status", "code"), [b[1:] for b in BAD_BULKS], ids=[b[0] for b in BAD_BULKS])
async def test_a_bad_bulk_is_refused_whole(
    client: httpx.AsyncClient, real_redis: redis.Redis, key_prefix: str, body: Any, status: int, code: str
) -> None:
    before = stored(real_redis, key_prefix)
    assert_json_error(await client.post(BULK, json=body), status, code)
    assert stored(real_redis, key_prefix) == before


async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    client: httpx.AsyncClient, real_redis: redis.Redis, key_prefix: str
) -> None:
    declared = await client.post(SUBMIT, content=b'{"content": "' + b"x" * 5000 + b'"}',
                                 headers={"content-type": "application/json"})  # fmt: skip

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    chunked = await client.post(SUBMIT, content=chunks(), headers={"content-type": "application/json"})
    nonsense = await client.post(SUBMIT, content=b"{}", headers={"content-length": "-1"})

    assert_json_error(declared, 413, "body_too_large")
    assert_json_error(chunked, 413, "body_too_large")
    assert_json_error(nonsense, 400, "invalid_content_length")
    assert stored(real_redis, key_prefix) == {}


async def test_unicode_content_is_stored_exactly(client: httpx.AsyncClient) -> None:
    text = "Ünïcödé 🤖 ½ — עברית · 中文 · e\u0301 \u200b zero-width \t tab\r\nCRLF"
    task_id = await submit(client, text)
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["content"] == text


TRAVERSAL_IDS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "task:1", "*", "1 OR 1=1",
                 "00000000-0000-0000-0000-00000000000g", "%00", "a" * 5000, "%F0%9F%A4%96"]  # fmt: skip


@pytest.mark.parametrize("task_id", TRAVERSAL_IDS)
async def test_odd_task_ids_are_404s_that_touch_nothing(
    client: httpx.AsyncClient, real_redis: redis.Redis, key_prefix: str, task_id: str
) -> None:
    await submit(client)
    before = stored(real_redis, key_prefix)
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/retry"), ("POST", "/cancel")]:
        response = await client.request(method, f"/api/v1/tasks/{task_id}{suffix}")
        assert response.status_code in (404, 405), (method, suffix, response.text)
        assert response.headers["content-type"] == "application/json"
    assert_json_error(await client.get(f"/api/v1/queues/{task_id}/tasks"), 404)
    assert stored(real_redis, key_prefix) == before


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 21}, "invalid_limit"),
        ({"limit": 0}, "invalid_limit"),
        ({"limit": -1}, "invalid_limit"),
        ({"limit": 10**40}, None),
        ({"limit": "ten"}, "validation_error"),
        ({"cursor": "9" * 400 + ":x"}, "invalid_cursor"),
        ({"cursor": "1:../../x"}, "invalid_cursor"),
        ({"status": "PENDING\u0000"}, "invalid_status"),
    ],
)
async def test_pagination_is_capped_and_checked(client: httpx.AsyncClient, params: dict[str, Any], code: str) -> None:
    for path in ("/api/v1/tasks/", "/api/v1/queues/dlq"):
        if "status" in params and path != "/api/v1/tasks/":
            continue
        response = await client.get(path, params=params)
        assert_json_error(response, 422, code)
    if "cursor" not in params and "status" not in params:
        assert_json_error(await client.get("/api/v1/queues/primary/tasks", params=params), 422)


async def test_odd_headers_are_harmless(client: httpx.AsyncClient) -> None:
    long_key = {"Idempotency-Key": "k" * 256}
    assert_json_error(await client.post(SUBMIT, json={"content": "x"}, headers=long_key), 422, "validation_error")
    latin_key = {"Idempotency-Key": "caf\xe9 \xff".encode("latin-1")}
    latin = await client.post(SUBMIT, json={"content": "x"}, headers=latin_key)
    assert latin.status_code == 202


# --- CORS ---------------------------------------------------------------------------------------
def _preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip


async def test_cors_allows_only_the_dashboard_by_default(client: httpx.AsyncClient) -> None:
    dashboard = await client.options(SUBMIT, headers=_preflight("http://localhost:3000"))
    evil = await client.options(SUBMIT, headers=_preflight("https://evil.example"))
    simple = await client.get("/live", headers={"Origin": "https://evil.example"})

    assert dashboard.status_code == 200
    assert dashboard.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "authorization" in dashboard.headers["access-control-allow-headers"].lower()
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_origins_come_from_the_settings(settings: Settings, real_redis: redis.Redis) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": "https://ops.example.com"}))
    async for client in serve(app):
        allowed = await client.get("/live", headers={"Origin": "https://ops.example.com"})
        dashboard = await client.get("/live", headers={"Origin": "http://localhost:3000"})
        assert allowed.headers["access-control-allow-origin"] == "https://ops.example.com"
        assert "access-control-allow-origin" not in dashboard.headers
