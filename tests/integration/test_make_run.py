"""`make run`'s own process (utils/run.py) in a terminal: it says where the stack is once the API
answers /ready as AsyncTaskFlow, and a Ctrl-C stops everything and exits 0, so that make prints
no "make: *** Error 130" after a normal stop (issue 21, 3 and 4)."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
import uuid

import httpx
import pytest

from tests.integration.stack import ROOT, STARTUP_TIMEOUT
from utils.probe import api_ready
from utils.redis_server import free_port

pytestmark = pytest.mark.integration


class Terminal:
    """A process on a pseudo-terminal, as a user's shell runs it (Ctrl-C is a byte typed there)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes the command
            os.chdir(ROOT)
            os.execvpe(argv[0], argv, env)
        self.output = b""

    def read_until(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output and time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the process ended and closed the terminal
                    return text.encode() in self.output
                if not chunk:
                    break
                self.output += chunk
        return text.encode() in self.output

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_until("\0never\0", 0.5)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise AssertionError("still running:\n" + self.text()[-3000:])

    def text(self) -> str:
        return self.output.decode(errors="replace")


def test_make_run_announces_itself_once_ready_and_a_ctrl_c_is_a_clean_stop(redis_url: str) -> None:
    api_port = free_port()
    env = {**os.environ, "API_PORT": str(api_port), "FRONTEND_PORT": str(free_port()), "REDIS_URL": redis_url,
           "REDIS_KEY_PREFIX": f"run{uuid.uuid4().hex[:8]}:", "CELERY_BROKER_DB": "3"}  # fmt: skip
    terminal = Terminal([sys.executable, "-m", "utils.run"], env)
    try:
        assert terminal.read_until("make run: ready: API on", STARTUP_TIMEOUT), terminal.text()[-3000:]
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}") as client:
            assert api_ready(client)
    except BaseException:
        os.kill(terminal.pid, signal.SIGTERM)  # passed on to honcho, which stops the stack
        terminal.wait(60)
        raise
    os.write(terminal.fd, b"\x03")  # Ctrl-C, typed
    code = terminal.wait(60)
    assert code == 0, terminal.text()[-3000:]
    assert "Traceback" not in terminal.text()
