"""How the containers' processes end on `docker compose stop` (SIGTERM, forwarded by tini): a
clean stop exits 0, which compose and `docker ps -a` show as a clean exit (143 reads as a
failure). Real processes on the private Redis, started as their compose services start them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.stack import Stack, wait_until


def test_the_api_exits_0_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    stack = Stack(redis_url, "http://127.0.0.1:9", tmp_path)
    try:
        proc = stack.start("api")
        assert stack.http.get("/health").status_code in (200, 503)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, stack.log("api")
        assert "Finished server process" in stack.log("api"), "it stopped through uvicorn's graceful shutdown"
    finally:
        stack.stop()


def test_the_scheduler_and_the_worker_container_exit_0_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    stack = Stack(redis_url, "http://127.0.0.1:9", tmp_path)
    log = open(tmp_path / "container.log", "ab")  # noqa: SIM115 - closed below
    container = subprocess.Popen(
        [sys.executable, "-m", "worker.container"], cwd=tmp_path, env={**stack.env, "WORKER_ID": f"{stack.prefix}c"},
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        scheduler = stack.start("scheduler")
        wait_until(lambda: stack.redis.exists(stack.keys.scheduler_heartbeat), 60, what="the scheduler's heartbeat")
        wait_until(lambda: stack.live_consumers() >= 1, 60, what="the worker container's consumer")
        for proc in (scheduler, container):
            proc.send_signal(signal.SIGTERM)
        assert scheduler.wait(30) == 0, stack.log("scheduler")
        assert container.wait(60) == 0, (tmp_path / "container.log").read_text(errors="replace")
    finally:
        if container.poll() is None:
            container.kill()
            container.wait(10)
        log.close()
        stack.stop()
