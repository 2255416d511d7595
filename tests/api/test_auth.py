"""API keys and scopes: every route's access decision, proved by calling it; tasks belong to the
key that submitted them; the open mode says so. All on the session's real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis
from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import SecretStr

from api.auth import Public, check_routes, hash_key, new_key, parse_keys
from api.main import create_app
from api.schemas import ErrorBody
from core.keys import Keys
from core.settings import Settings
from core.states import State
from core.store import TaskStore
from tests.api.auth_helpers import ADMIN, ADMIN_KEY, ALICE, BOB, keyed
from tests.api.conftest import Pipeline, serve

pytestmark = pytest.mark.anyio

TASK = "/api/v1/tasks/{task_id}"

# Every route of the app and the scope it needs. A route missing here fails
# test_the_table_names_every_route: a new route cannot ship without a decision.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("GET", "/live"): "public",
    ("GET", "/ready"): "public",
    ("GET", "/health"): "public",
    ("GET", "/api/v1/task-types"): "submit",
    ("GET", "/api/v1/usage"): "submit",
    ("POST", "/api/v1/tasks/{task_type}"): "submit",  # an unknown type: 404 once the key is accepted
    ("POST", "/api/v1/tasks/{task_type}/"): "submit",
    ("POST", "/api/v1/tasks/{task_type}/bulk"): "submit",
    ("GET", "/api/v1/tasks/"): "submit",
    ("GET", "/api/v1/tasks"): "submit",
    ("GET", TASK): "submit",
    ("DELETE", TASK): "submit",
    ("POST", TASK + "/retry"): "submit",
    ("POST", TASK + "/cancel"): "submit",
    ("GET", "/api/v1/tasks/statistics/overview"): "admin",
    ("POST", "/api/v1/tasks/requeue-orphaned"): "admin",
    ("GET", "/api/v1/queues/status"): "admin",
    ("GET", "/api/v1/queues/throughput"): "admin",
    ("GET", "/api/v1/queues/status/stream"): "admin",
    ("GET", "/api/v1/queues/dlq"): "admin",
    ("POST", "/api/v1/queues/dlq/requeue"): "admin",
    ("DELETE", "/api/v1/queues/dlq"): "admin",
    ("GET", "/api/v1/queues/{name}/tasks"): "admin",
    ("GET", "/health/workers"): "admin",
    ("GET", "/health/workers/diagnostics"): "admin",
    ("GET", "/health/workers/circuit-breaker"): "admin",
    ("POST", "/health/workers/reset-circuit-breaker"): "admin",
    ("POST", "/health/workers/open-circuit-breaker"): "admin",
    ("GET", "/metrics"): "admin",
    ("GET", "/api/v1/openrouter/status"): "admin",
    ("GET", "/api/v1/openrouter/metrics"): "admin",
}
for _type in ("summarize", "translate", "extract", "chat"):
    for _path in (f"/api/v1/tasks/{_type}/", f"/api/v1/tasks/{_type}", f"/api/v1/tasks/{_type}/bulk"):
        ROUTE_SCOPES["POST", _path] = "submit"
BODIES = {"/api/v1/tasks/summarize/bulk": {"items": [{"content": "Some text."}]}}
# The stream never ends, and the in-process transport buffers whole responses: its success with an
# admin key is proved by tests/api/test_ops_queues.py under a real server; its refusals here.
ENDLESS = {"/api/v1/queues/status/stream"}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {(m, c.path) for c in iter_route_contexts(app.routes) for m in (c.methods or ()) if m != "HEAD"}


@pytest.fixture
def keyed_settings(settings: Settings) -> Settings:
    return keyed(settings)


@pytest.fixture
async def keyed_client(keyed_settings: Settings, real_redis: redis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async for c in serve(create_app(keyed_settings)):
        yield c


def test_the_table_names_every_route() -> None:
    routes = app_routes(create_app())
    assert routes - ROUTE_SCOPES.keys() == set(), "routes without an access decision in ROUTE_SCOPES"
    assert ROUTE_SCOPES.keys() - routes == set(), "ROUTE_SCOPES names routes that do not exist"


def test_an_app_refuses_a_route_without_an_access_decision() -> None:
    router = APIRouter()

    @router.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="GET /forgotten needs exactly one access decision"):
        check_routes(router.routes, ErrorBody)

    decided = APIRouter()
    decided.add_api_route("/fine", forgotten, dependencies=[Public])
    check_routes(decided.routes, ErrorBody)


async def _call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    url = path.replace("{task_id}", str(uuid.uuid4())).replace("{name}", "primary")
    body = BODIES.get(path, {"content": "Some text."} if "summarize" in path else None)
    return await client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path"), sorted(ROUTE_SCOPES), ids=lambda v: str(v))
async def test_each_route_needs_exactly_its_scope(keyed_client: httpx.AsyncClient, method: str, path: str) -> None:
    scope = ROUTE_SCOPES[(method, path)]
    anonymous = await _call(keyed_client, method, path, {})
    wrong_key = await _call(keyed_client, method, path, {"X-API-Key": "atf_not-a-key"})
    as_submit = await _call(keyed_client, method, path, ALICE) if path not in ENDLESS or scope != "submit" else None

    if scope == "public":
        assert anonymous.status_code not in (401, 403), anonymous.text
        return
    for refused in (anonymous, wrong_key):
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "unauthorized"
    assert as_submit is not None
    if scope == "admin":
        assert (as_submit.status_code, as_submit.json()["code"]) == (403, "forbidden")
    else:
        assert as_submit.status_code not in (401, 403), as_submit.text
    if path not in ENDLESS:
        as_admin = await _call(keyed_client, method, path, ADMIN)
        assert as_admin.status_code not in (401, 403), as_admin.text


async def test_both_headers_carry_a_key_and_other_schemes_do_not(keyed_client: httpx.AsyncClient) -> None:
    path = "/api/v1/tasks/statistics/overview"
    assert (await keyed_client.get(path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})).status_code == 200
    assert (await keyed_client.get(path, headers={"X-API-Key": ADMIN_KEY})).status_code == 200
    assert (await keyed_client.get(path, headers={"Authorization": f"Basic {ADMIN_KEY}"})).status_code == 401
    assert (await keyed_client.get(path, headers={"Authorization": "Bearer"})).status_code == 401


async def test_a_refusal_says_how_to_authenticate_and_never_echoes_the_key(keyed_client: httpx.AsyncClient) -> None:
    response = await keyed_client.get("/api/v1/tasks/", headers={"X-API-Key": "atf_almost-the-key"})

    assert response.status_code == 401
    assert response.json() == {
        "code": "unauthorized",
        "message": "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
    }
    assert "almost" not in response.text


# --- owners -----------------------------------------------------------------------------------
async def _submit(client: httpx.AsyncClient, headers: dict[str, str], content: str = "A text.") -> str:
    response = await client.post("/api/v1/tasks/summarize/", json={"content": content}, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


async def test_a_submit_key_sees_and_acts_on_its_own_tasks_only(
    keyed_client: httpx.AsyncClient, real_redis: redis.Redis, key_prefix: str
) -> None:
    alices = [await _submit(keyed_client, ALICE, f"alice {i}") for i in range(3)]
    bobs = await _submit(keyed_client, BOB, "bob")

    listed = (await keyed_client.get("/api/v1/tasks/", headers=ALICE)).json()
    assert [t["task_id"] for t in listed["items"]] == alices[::-1]
    assert real_redis.hget(Keys(key_prefix).task(bobs), "owner") == "bob"
    # Another key's task does not exist for alice, whatever she tries; nothing changes.
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("POST", "/retry")]:
        response = await keyed_client.request(method, f"/api/v1/tasks/{bobs}{path}", headers=ALICE)
        assert (response.status_code, response.json()["code"]) == (404, "task_not_found"), (method, path)
    assert (await keyed_client.get(f"/api/v1/tasks/{bobs}", headers=BOB)).json()["state"] == "PENDING"
    # Her own: read, cancel, retry, delete.
    assert (await keyed_client.post(f"/api/v1/tasks/{alices[0]}/cancel", headers=ALICE)).status_code == 200
    assert (await keyed_client.post(f"/api/v1/tasks/{alices[0]}/retry", headers=ALICE)).status_code == 202
    assert (await keyed_client.delete(f"/api/v1/tasks/{alices[1]}", headers=ALICE)).status_code == 204
    listed = (await keyed_client.get("/api/v1/tasks/", headers=ALICE)).json()
    assert [t["task_id"] for t in listed["items"]] == [alices[2], alices[0]]
    # The admin key sees everyone's, and may act on any.
    every = (await keyed_client.get("/api/v1/tasks/", headers=ADMIN)).json()["items"]
    assert {t["task_id"] for t in every} == {alices[0], alices[2], bobs}
    assert (await keyed_client.post(f"/api/v1/tasks/{bobs}/cancel", headers=ADMIN)).status_code == 200


async def test_an_owner_listing_pages_and_filters_by_state(
    keyed_client: httpx.AsyncClient, keyed_settings: Settings, pipeline: Pipeline
) -> None:
    ids = [await _submit(keyed_client, ALICE, f"text {i}") for i in range(5)]
    await _submit(keyed_client, BOB)
    pipeline.complete(ids[0])

    first = (await keyed_client.get("/api/v1/tasks/", params={"limit": 3}, headers=ALICE)).json()
    rest = (await keyed_client.get("/api/v1/tasks/", params={"limit": 3, "cursor": first["next_cursor"]},
                                   headers=ALICE)).json()  # fmt: skip
    completed = (await keyed_client.get("/api/v1/tasks/", params={"status": "completed"}, headers=ALICE)).json()

    assert [t["task_id"] for t in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_cursor"] is None
    assert [t["task_id"] for t in completed["items"]] == [ids[0]]


async def test_the_owner_index_follows_deletes_and_the_retention_purge(
    keyed_client: httpx.AsyncClient, sync_store: TaskStore, pipeline: Pipeline, real_redis: redis.Redis
) -> None:
    older, deleted, newer = [await _submit(keyed_client, ALICE, t) for t in ("older", "deleted", "newer")]
    index = sync_store.keys.owner_tasks("alice")
    assert real_redis.zcard(index) == 3

    await keyed_client.delete(f"/api/v1/tasks/{deleted}", headers=ALICE)
    pipeline.complete(older)
    time.sleep(0.005)  # finish times are Redis milliseconds: make "newest" unambiguous
    pipeline.complete(newer)
    purged = sync_store.purge(State.COMPLETED, 0, 1, 10)  # keep only the newest completed task

    assert purged == 1
    assert real_redis.zrange(index, 0, -1) == [newer]


async def test_idempotency_keys_are_per_api_key(keyed_client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-17"}
    first = await keyed_client.post("/api/v1/tasks/summarize/", json={"content": "a"}, headers=ALICE | headers)
    again = await keyed_client.post("/api/v1/tasks/summarize/", json={"content": "a"}, headers=ALICE | headers)
    other = await keyed_client.post("/api/v1/tasks/summarize/", json={"content": "b"}, headers=BOB | headers)

    assert again.json()["task_id"] == first.json()["task_id"]
    assert other.json()["task_id"] != first.json()["task_id"] and "idempotent-replayed" not in other.headers


# --- rate limit ---------------------------------------------------------------------------------
async def test_each_key_has_its_own_submission_rate_with_retry_after(
    settings: Settings, real_redis: redis.Redis
) -> None:
    limited = keyed(settings, submit_rate_per_second=0.5, submit_rate_burst=3, bulk_max_items=3)
    async for client in serve(create_app(limited)):
        bulk = {"items": [{"content": "x"}, {"content": "y"}]}
        assert (await client.post("/api/v1/tasks/summarize/bulk", json=bulk, headers=ALICE)).status_code == 202
        assert (await client.post("/api/v1/tasks/summarize/", json={"content": "z"}, headers=ALICE)).status_code == 202
        refused = await client.post("/api/v1/tasks/summarize/", json={"content": "w"}, headers=ALICE)
        bobs = await client.post("/api/v1/tasks/summarize/", json={"content": "w"}, headers=BOB)

        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert refused.headers["retry-after"] == "2"  # one token at 0.5/s
        assert bobs.status_code == 202
        listed = (await client.get("/api/v1/tasks/", headers=ALICE)).json()["items"]
        assert len(listed) == 3, "the refused submit stored nothing"


# --- open mode, key configuration --------------------------------------------------------------
async def test_without_keys_the_api_is_open_and_says_so(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, settings: Settings, real_redis: redis.Redis
) -> None:
    async for fresh in serve(create_app(settings)):
        body = (await fresh.get("/health")).json()
        assert (body["auth"], body["warnings"]) == ("open", ["no API_KEYS configured: the API is open to anyone "
                                                              "who can reach it"])  # fmt: skip
        assert (await fresh.post("/health/workers/reset-circuit-breaker")).status_code == 200
    assert "SECURITY: no API_KEYS configured" in caplog.text


async def test_with_keys_health_says_so_and_stays_public(keyed_client: httpx.AsyncClient) -> None:
    body = (await keyed_client.get("/health")).json()
    assert (body["auth"], body["warnings"]) == ("api_keys", [])


async def test_auth_required_without_keys_refuses_to_start(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"auth_required": True}))
    with pytest.raises(RuntimeError, match="AUTH_REQUIRED is set but API_KEYS is empty"):
        async with app.router.lifespan_context(app):
            pass


def test_api_keys_parse_and_bad_entries_are_refused_without_echoing_them() -> None:
    digest = hash_key("k")
    keys = parse_keys(f" a:submit:{digest},\n b.c-d:admin:{digest.upper()} ")
    assert [(k.id, k.scope.value) for k in keys] == [("a", "submit"), ("b.c-d", "admin")]
    for bad in ["a:root:" + digest, "a:submit:xyz", f"a b:submit:{digest}", "atf_secretpastedkey",
                f"a/../x:submit:{digest}"]:  # fmt: skip
        with pytest.raises(ValueError) as raised:
            parse_keys(bad)
        assert "secretpasted" not in str(raised.value)
    with pytest.raises(ValueError, match="repeats the id 'a'"):
        parse_keys(f"a:submit:{digest},a:admin:{digest}")


def test_a_new_key_matches_its_entry() -> None:
    key, entry = new_key("ci", "admin")
    assert parse_keys(entry)[0].digest.hex() == hash_key(key) and key not in entry


async def test_settings_from_the_environment_configure_keys(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, real_redis: redis.Redis
) -> None:
    monkeypatch.setenv("API_KEYS", f"env:admin:{hash_key('from-env')}")
    from_env = Settings(_env_file=None, redis_url=settings.redis_url, redis_key_prefix=settings.redis_key_prefix)
    assert isinstance(from_env.api_keys, SecretStr) and "from-env" not in repr(from_env)
    async for client in serve(create_app(from_env)):
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"X-API-Key": "from-env"})).status_code == 200
