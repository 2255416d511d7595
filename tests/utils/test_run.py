"""`make run` (utils/run.py) before it starts anything: a taken port is named with the setting that
moves it; and the /ready probe it and the tests use is not fooled by another program on the port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from core.redis import reachable
from utils.probe import api_ready, identifies
from utils.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("setting", ["API_PORT", "FRONTEND_PORT"])
def test_a_taken_port_is_named_with_its_setting_and_nothing_starts(
    taken_port: int, setting: str, tmp_path: Path
) -> None:
    redis_port = free_port()
    ports = {"API_PORT": str(free_port()), "FRONTEND_PORT": str(free_port()), setting: str(taken_port)}
    env = {**os.environ, **ports, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "PYTHONPATH": str(ROOT)}
    # From a scratch directory: no developer's .env, and nothing of .run/ written anywhere.
    run = subprocess.run([sys.executable, "-m", "utils.run"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip

    assert run.returncode == 1, run.stdout + run.stderr
    assert f"port {taken_port} for the {'API' if setting == 'API_PORT' else 'dashboard'} is taken" in run.stderr
    assert "another program listens there" in run.stderr and f"{setting}=<port>" in run.stderr
    assert run.stderr.count("is taken") == 1, "only the taken one is named"
    assert "starting an embedded" not in run.stdout and not reachable(f"redis://127.0.0.1:{redis_port}/0")
    assert list(tmp_path.iterdir()) == []


class _Impostor(BaseHTTPRequestHandler):
    """Another web server on the port: it answers /ready with 200 and JSON, but not ours."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_probe_is_not_fooled_by_another_program() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}") as client:
            assert client.get("/ready").status_code == 200
            assert not api_ready(client)
    finally:
        server.shutdown()
        server.server_close()
    with httpx.Client(base_url=f"http://127.0.0.1:{free_port()}") as nobody:
        assert not api_ready(nobody)


def test_what_the_probe_accepts() -> None:
    ours = {"status": "ok", "service": "asynctaskflow"}
    assert identifies(httpx.Response(200, json=ours))
    assert identifies(httpx.Response(503, json={**ours, "status": "unavailable"})), "ours, Redis away"
    assert not identifies(httpx.Response(404, json=ours))
    assert not identifies(httpx.Response(200, text="<html>ready</html>"))
    assert not identifies(httpx.Response(200, json=["asynctaskflow"]))
