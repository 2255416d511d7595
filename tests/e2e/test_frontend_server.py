"""utils/frontend_server.py without a browser: the build as a single-page app, no file outside it,
the API passed through with its status and body, and a stopped API as a JSON 502."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from tests.integration.stack import STARTUP_TIMEOUT, Stack
from utils.frontend_server import create_app, is_stream
from utils.redis_server import free_port


@contextlib.contextmanager
def served(app: Starlette) -> Iterator[httpx.Client]:
    """The app under a real uvicorn on a free loopback port (Starlette's TestClient over httpx
    is deprecated, with a StarletteDeprecationWarning in every run's summary)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard server did not start"
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title>")
    (tmp_path / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("not served")
    return tmp_path


@pytest.fixture
def closed_api(dist: Path) -> Iterator[httpx.Client]:
    with served(create_app(f"http://127.0.0.1:{free_port()}", dist)) as client:
        yield client


def test_files_of_the_build_and_the_app_for_any_other_path(closed_api: httpx.Client) -> None:
    assert closed_api.get("/assets/app.js").text == "console.log(1)"
    for path in ("/", "/tasks/6f1c", "/dlq?x=1"):
        response = closed_api.get(path)
        assert response.status_code == 200 and "<title>app</title>" in response.text
        assert response.headers["cache-control"] == "no-cache"


def test_no_file_outside_the_build(closed_api: httpx.Client) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt"):
        assert "not served" not in closed_api.get(path).text


def test_a_stopped_api_is_a_json_502(closed_api: httpx.Client) -> None:
    for path in ("/api/v1/queues/status", "/health", "/health/workers", "/docs", "/openapi.json", "/redoc"):
        response = closed_api.get(path)
        assert response.status_code == 502
        assert response.json()["code"] == "api_unreachable"


def test_stream_paths_are_the_ones_nginx_leaves_unbuffered() -> None:
    assert is_stream("/api/v1/queues/status/stream") and is_stream("/api/v1/tasks/x/events/")
    assert not is_stream("/api/v1/queues/status") and not is_stream("/api/v1/streams")


@pytest.mark.e2e
def test_the_api_answers_through_it_as_it_is(stack: Stack, dist: Path) -> None:
    with served(create_app(f"http://127.0.0.1:{stack.api_port}", dist)) as client:
        created = client.post("/api/v1/tasks/summarize/", json={"content": "Through the proxy."})
        assert created.status_code == 202 and created.headers["location"].startswith("/api/v1/tasks/")
        task_id = created.json()["task_id"]
        assert client.get(f"/api/v1/tasks/{task_id}").json()["task_id"] == task_id
        refused = client.post("/api/v1/tasks/summarize/", json={"content": ""})
        assert refused.status_code == 422
        assert client.delete("/api/v1/tasks/00000000-0000-4000-8000-000000000000").json()["code"] == "task_not_found"
        assert client.get("/health").status_code in (200, 503)
        # The API's docs, not the dashboard's page (as nginx does in the compose image).
        assert client.get("/openapi.json").json()["info"]["title"]
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200 and "/openapi.json" in page.text and "<title>app</title>" not in page.text
