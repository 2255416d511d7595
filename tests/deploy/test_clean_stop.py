"""How the containers' processes end on `docker compose stop` (SIGTERM, forwarded by tini): a
clean stop exits 0, which compose and `docker ps -a` show as a clean exit (143 reads as a
failure). Real processes on the private Redis."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.integration.stack import Stack


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
