"""The compose image's nginx config (frontend/nginx.conf) serving the build and proxying the real
API: the live stream must reach the browser unbuffered. Runs the system nginx when there is one
(the Docker DNS name and resolver are swapped for the test API's loopback address)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DESKTOP
from tests.integration.stack import ROOT, STARTUP_TIMEOUT, Stack, wait_until
from utils.redis_server import free_port

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
MIME_TYPES = Path("/etc/nginx/mime.types")


def site_config(api_port: int, port: int, dist: Path) -> str:
    """frontend/nginx.conf with the container's names replaced by this test's addresses."""
    conf = (ROOT / "frontend" / "nginx.conf").read_text()
    swaps = {
        "listen 3000;": f"listen 127.0.0.1:{port};",
        "root /usr/share/nginx/html;": f"root {dist};",
        "set $api http://api:8000;": f"set $api http://127.0.0.1:{api_port};",
        "resolver 127.0.0.11 valid=10s ipv6=off;": "",
    }
    for old, new in swaps.items():
        assert old in conf, f"frontend/nginx.conf no longer has {old!r}; update this test"
        conf = conf.replace(old, new)
    return conf


@pytest.fixture
def nginx(stack: Stack, dist: Path, tmp_path: Path) -> Iterator[str]:
    if NGINX is None or not MIME_TYPES.exists():
        pytest.skip("nginx is not installed (.ci/run installs it)")
    port = free_port()
    (tmp_path / "logs").mkdir()
    (tmp_path / "site.conf").write_text(site_config(stack.api_port, port, dist))
    (tmp_path / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        f"events {{}}\nhttp {{\n include {MIME_TYPES};\n access_log off;\n client_body_temp_path {tmp_path};\n"
        f" proxy_temp_path {tmp_path}/proxy;\n include {tmp_path}/site.conf;\n}}\n"
    )
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(url), STARTUP_TIMEOUT, what="nginx")
    yield url
    proc.terminate()
    proc.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_nginx_streams_events_as_they_happen(nginx: str, stack: Stack) -> None:
    with httpx.stream("GET", nginx + "/api/v1/queues/status/stream", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "event: snapshot"
        next(lines), next(lines)  # its data, the blank line
        started = time.monotonic()
        task_id = stack.submit("Through nginx. [[tag:nginx]]")
        events = (line for line in lines if line.startswith("event: ") and line != "event: ping")
        assert next(events) == "event: transition"  # not held in a buffer until it fills
        assert time.monotonic() - started < 2
    # Finished before the next test reads the live counts (the stack is the module's).
    stack.wait_terminal([task_id], 60)


def test_the_dashboard_works_behind_nginx(nginx: str, stack: Stack, browser: Any) -> None:
    context = browser.new_context(viewport=DESKTOP, base_url=nginx)
    try:
        page = context.new_page()
        page.goto("/tasks/not-a-route-on-the-server")  # a deep link: nginx falls back to the app
        expect(page.get_by_role("heading", level=1)).to_contain_text("Task")
        page.goto("/")
        expect(page.get_by_test_id("connection")).to_have_text("Live")
        expect(page.get_by_test_id("breaker-state")).to_have_text("closed")  # /health/workers is proxied
        completed = page.locator("[data-node='completed'] .node-count")
        expect(completed).not_to_have_text("…")
        before = int(completed.text_content() or "")
        stack.wait_terminal([stack.submit("Counted live behind nginx. [[tag:n]]")], 30)
        expect(completed).to_have_text(str(before + 1))
    finally:
        context.close()


def test_nginx_passes_the_api_docs_not_the_dashboard(nginx: str, stack: Stack) -> None:
    schema = httpx.get(nginx + "/openapi.json", timeout=10)
    assert schema.status_code == 200 and schema.json() == stack.http.get("/openapi.json").json()
    for path in ("/docs", "/redoc"):
        page = httpx.get(nginx + path, timeout=10)
        assert page.status_code == 200 and page.text == stack.http.get(path).text
    oauth = httpx.get(nginx + "/docs/oauth2-redirect", timeout=10)
    assert oauth.status_code == 200 and 'id="root"' not in oauth.text
    assert 'id="root"' in httpx.get(nginx + "/documents", timeout=10).text, "only those paths: the app keeps the rest"
