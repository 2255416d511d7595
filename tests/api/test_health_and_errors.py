"""/health, the 503 every route gives while Redis is down, and the app's error envelope."""

from __future__ import annotations

import re
import tokenize
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI

import api.main
from api.main import create_app
from core.settings import Settings
from tests.api.conftest import serve, submit
from utils import redis_server

pytestmark = pytest.mark.anyio


# Without API_KEYS the API is open, and /health says so (no effect on the status).
OPEN = {"auth": "open", "warnings": ["no API_KEYS configured: the API is open to anyone who can reach it"]}


async def test_health_without_workers_or_scheduler_is_503_saying_why(client: httpx.AsyncClient, redis_url: str) -> None:
    response = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unhealthy", "redis": "ok", "workers": 0, "scheduler": "missing", "breaker": "closed",
        "problems": [
            "no live worker, so tasks wait in the queue",
            "no scheduler: retries are not promoted and orphans are not reaped",
        ],
        **OPEN,
        "redis_url": redis_url,
    }  # fmt: skip


@pytest.fixture(params=["redis", "cluster"])
async def dead_redis_client(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose Redis worked for one request and then stopped: one server, or a 3-master
    Redis Cluster holding 3 shards (every node killed)."""
    nodes: list[redis_server.Node] = []
    try:
        if request.param == "cluster":
            nodes = redis_server.start_cluster(tmp_path / "cluster", masters=3)
            seeds = ",".join(f"127.0.0.1:{port}" for _, port in nodes)
            broker = redis_url.rsplit("/", 1)[0] + "/5"
            settings = Settings(redis_cluster_nodes=seeds, celery_broker_url=broker, redis_shards=3,
                                redis_url=f"redis://127.0.0.1:{nodes[0][1]}/0", redis_socket_timeout=1.0)  # fmt: skip
        else:
            port = redis_server.free_port()
            nodes = [(redis_server.start(port, tmp_path), port)]
            settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_socket_timeout=1.0)
        async for client in serve(create_app(settings)):
            await submit(client)  # a pooled connection exists, and then breaks
            redis_server.stop(nodes)
            yield client
    finally:
        redis_server.stop([node for node in nodes if node[0].poll() is None])


REDIS_ROUTES = [
    ("POST", "/api/v1/tasks/summarize/", {"content": "text"}),
    ("GET", f"/api/v1/tasks/{uuid.uuid4()}", None),
    ("GET", "/api/v1/tasks/", None),
    ("DELETE", f"/api/v1/tasks/{uuid.uuid4()}", None),
    ("POST", f"/api/v1/tasks/{uuid.uuid4()}/retry", None),
    ("POST", f"/api/v1/tasks/{uuid.uuid4()}/cancel", None),
    ("POST", "/api/v1/tasks/requeue-orphaned", None),
    ("GET", "/api/v1/queues/status", None),
    ("GET", "/api/v1/queues/dlq", None),
    ("POST", "/api/v1/tasks/summarize/bulk", {"items": [{"content": "text"}]}),
    ("GET", "/api/v1/tasks/statistics/overview", None),
    ("GET", "/api/v1/queues/primary/tasks", None),
    ("GET", "/api/v1/queues/status/stream", None),
    ("POST", "/api/v1/queues/dlq/requeue", None),
    ("DELETE", "/api/v1/queues/dlq", None),
    ("GET", "/health/workers", None),
    ("GET", "/health/workers/diagnostics", None),
    ("GET", "/health/workers/circuit-breaker", None),
    ("POST", "/health/workers/reset-circuit-breaker", None),
    ("POST", "/health/workers/open-circuit-breaker", None),
    ("GET", "/metrics", None),
    ("GET", "/api/v1/usage", None),
    ("GET", "/api/v1/tasks/?priority=3", None),
]


@pytest.fixture
async def dead_cluster_client(tmp_path: Path, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app on a 3-master Redis Cluster with 3 shards, which worked for one request and then
    went away (every node killed)."""
    nodes = redis_server.start_cluster(tmp_path / "cluster", masters=3)
    try:
        seeds = ",".join(f"127.0.0.1:{port}" for _, port in nodes)
        broker = redis_url.rsplit("/", 1)[0] + "/5"
        settings = Settings(redis_cluster_nodes=seeds, celery_broker_url=broker, redis_shards=3,
                            redis_url=f"redis://127.0.0.1:{nodes[0][1]}/0", redis_socket_timeout=1.0)  # fmt: skip
        async for client in serve(create_app(settings)):
            await submit(client)
            redis_server.stop(nodes)
            yield client
    finally:
        redis_server.stop([node for node in nodes if node[0].poll() is None])


async def test_every_route_is_503_while_redis_is_down(
    dead_redis_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    for method, path, body in REDIS_ROUTES:
        response = await dead_redis_client.request(method, path, json=body)
        assert response.status_code == 503, (method, path, response.text)
        assert response.json() == {"code": "redis_unavailable", "message": "Redis is unreachable; retry shortly"}
        assert response.headers["retry-after"] == "1"

    response = await dead_redis_client.get("/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unhealthy", "redis": "unreachable", "workers": None, "scheduler": None, "breaker": None,
        "problems": ["redis unreachable: nothing can be stored or read"], **OPEN,
    } | {"redis_url": response.json()["redis_url"]}  # fmt: skip
    assert (await dead_redis_client.get("/ready")).json() == {"status": "unavailable", "service": "asynctaskflow"}
    assert (await dead_redis_client.get("/live")).status_code == 200
    assert "Traceback" not in caplog.text  # an outage is a warning, not a crash


async def test_validation_still_answers_while_redis_is_down(dead_redis_client: httpx.AsyncClient) -> None:
    response = await dead_redis_client.post("/api/v1/tasks/summarize/", json={"content": ""})

    assert response.status_code == 422
    assert (await dead_redis_client.get("/api/v1/tasks/nope")).status_code == 404


async def test_unknown_route_and_wrong_method_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing-here")
    wrong_method = await client.put("/api/v1/tasks/summarize/", json={"content": "x"})

    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found", "message": "Not Found"}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["allow"]


async def test_unexpected_error_is_500_without_a_trace(
    settings: Settings, real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    async def explode() -> None:
        raise RuntimeError("boom-internals")

    app.add_api_route("/explode", explode)
    async for client in serve(app, raise_app_exceptions=False):
        response = await client.get("/explode")

    assert response.status_code == 500
    assert response.json() == {"code": "internal_error", "message": "internal error"}
    assert "boom-internals" not in response.text
    assert "boom-internals" in caplog.text  # the traceback stays on the server


def test_importing_the_module_does_no_io() -> None:
    """`uvicorn api.main:app` imports this; settings and clients only appear at start-up."""
    assert isinstance(api.main.app, FastAPI)
    assert not hasattr(api.main.app.state, "store")


def test_openapi_documents_every_route() -> None:
    paths = create_app().openapi()["paths"]

    assert set(paths) == {
        "/api/v1/tasks/summarize/", "/api/v1/tasks/requeue-orphaned", "/api/v1/tasks/", "/api/v1/tasks/{task_id}",
        "/api/v1/tasks/{task_id}/retry", "/api/v1/tasks/{task_id}/cancel", "/api/v1/queues/status",
        "/api/v1/queues/throughput",
        "/api/v1/queues/dlq", "/health",
        "/api/v1/tasks/summarize/bulk", "/api/v1/tasks/statistics/overview", "/api/v1/queues/{name}/tasks",
        "/api/v1/queues/status/stream", "/api/v1/queues/dlq/requeue", "/health/workers",
        "/health/workers/diagnostics", "/health/workers/circuit-breaker", "/health/workers/reset-circuit-breaker",
        "/health/workers/open-circuit-breaker", "/live", "/ready", "/metrics",
        "/api/v1/openrouter/status", "/api/v1/openrouter/metrics", "/api/v1/task-types",
        "/api/v1/tasks/translate/", "/api/v1/tasks/translate/bulk", "/api/v1/tasks/extract/",
        "/api/v1/tasks/extract/bulk", "/api/v1/tasks/chat/", "/api/v1/tasks/chat/bulk", "/api/v1/usage",
    }  # fmt: skip
    assert paths["/api/v1/tasks/summarize/"]["post"]["responses"]["413"]


def test_openapi_gives_every_route_a_response_model_and_its_errors() -> None:
    """/docs is complete: each JSON route names its 200 model, and every route its 503 error body."""
    schema = create_app().openapi()
    streams = {"/metrics", "/api/v1/queues/status/stream"}
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            ok = next(code for code in op["responses"] if code.startswith("2"))
            content = op["responses"][ok].get("content", {})
            if path in streams:
                assert content, (method, path)
            elif ok != "204":
                assert "$ref" in str(content["application/json"]["schema"]), (method, path)
            if path != "/live":
                assert "503" in op["responses"], (method, path)
    assert "Idempotency-Key" in str(schema["paths"]["/api/v1/tasks/summarize/"]["post"]["parameters"])


def test_no_key_is_spelled_in_the_api() -> None:
    """Keys come from core.keys through the store; no string literal in the API builds one."""
    key_shaped = re.compile(r"\b(task|tasks|dlq|worker|workers|breaker):")
    for path in Path(api.main.__file__).parent.rglob("*.py"):
        with path.open("rb") as f:
            literals = [t.string for t in tokenize.tokenize(f.readline) if t.type == tokenize.STRING]
        assert not [s for s in literals if key_shaped.search(s)], path


async def test_a_full_redis_is_a_503_and_stores_nothing(client: httpx.AsyncClient, real_redis: redis.Redis) -> None:
    """At REDIS_MAXMEMORY with noeviction, Redis refuses writes: the client hears why, not a 500."""
    real_redis.config_set("maxmemory-policy", "noeviction")
    real_redis.config_set("maxmemory", 1)
    try:
        response = await client.post("/api/v1/tasks/summarize/", json={"content": "Some text."})
    finally:
        real_redis.config_set("maxmemory", 0)
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "redis_full" and "out of memory" in response.json()["message"]
    assert response.headers["retry-after"] == "30"
    assert (await client.get("/api/v1/tasks/")).json()["items"] == []
