"""The worker container's main process (the consumer) and its child, the real Celery worker, on
the private Redis: a task flows through the pair; SIGTERM stops both cleanly, the consumer
first; when either dies the other stops and the container exits non-zero, so the restart policy
restarts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.keys import Keys
from core.states import State
from core.store import TaskStore
from core.task import Task
from tests.integration.stack import STARTUP_TIMEOUT, wait_until
from worker.container import WORKER_COMMAND

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Container:
    """`python -m worker.container` as docker would run it, with its own WORKER_ID and prefix."""

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.prefix = f"wc{uuid.uuid4().hex[:8]}:"
        self.worker_id = f"{self.prefix}box"
        self.keys = Keys(self.prefix)
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.store = TaskStore(self.redis, self.keys)
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "WORKER_ID": self.worker_id,
            "CELERY_BROKER_DB": "3",
            "LLM_PROVIDER": "offline",
            "CELERY_WORKER_CONCURRENCY": "2",
            "HEARTBEAT_INTERVAL": "0.5",
            "HEARTBEAT_TTL": "2",
            "CONSUMER_SHUTDOWN_GRACE": "3",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = workdir / "container.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = workdir

    def start(self) -> Container:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.container"], cwd=self.workdir, env=self.env, stdout=log, stderr=log
        )
        wait_until(self.consumer_alive, STARTUP_TIMEOUT, what="the consumer's heartbeat")
        wait_until(lambda: "ready" in self.log(), STARTUP_TIMEOUT, what="the Celery worker to be ready")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def consumer_alive(self) -> bool:
        return self.check() == 0

    def check(self) -> int:
        """The container's health check, run as docker runs it."""
        cmd = [sys.executable, "-m", "worker.container", "--check"]
        return subprocess.run(cmd, cwd=self.workdir, env=self.env, capture_output=True, timeout=30).returncode

    def children(self) -> dict[str, int]:
        """Pid by role: the consumer is the container's process, the worker its one child."""
        assert self.proc is not None
        pids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        commands = {int(pid): [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
                    for pid in pids}  # fmt: skip
        assert [argv[1:] for argv in commands.values()] == [WORKER_COMMAND[1:]], commands
        return {"consumer": self.proc.pid, "worker": next(iter(commands))}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.redis.close()


@pytest.fixture
def container(redis_url: str, tmp_path: Path) -> Iterator[Container]:
    box = Container(redis_url, tmp_path).start()
    yield box
    box.stop()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return state == "Z"  # exited, not yet reaped


def test_a_task_flows_through_the_pair_and_sigterm_stops_both_cleanly(container: Container) -> None:
    task = container.store.create(Task(uuid.uuid4().hex, "summarize", "One. Two. Three. Four.", max_retries=3))
    wait_until(lambda: container.store.get(task.id).state == State.COMPLETED, 30, what="the task to complete")
    children = container.children()
    assert container.proc is not None
    container.proc.send_signal(signal.SIGTERM)
    assert container.proc.wait(60) == 0, container.log()
    assert all(gone(pid) for pid in children.values())
    assert container.check() == 1, "the consumer left: no heartbeat of this container remains"
    log = container.log()
    assert log.index("unfinished task(s) handed back") < log.index("stopping worker"), "the consumer stops first"


@pytest.mark.parametrize("victim", ["consumer", "worker"])
def test_when_one_dies_the_other_stops_and_the_container_fails(container: Container, victim: str) -> None:
    children = container.children()
    os.kill(children[victim], signal.SIGKILL)
    assert container.proc is not None
    code = container.proc.wait(60)
    assert code != 0, "a non-zero exit is what makes the restart policy restart the container"
    survivor = next(role for role in children if role != victim)
    wait_until(lambda: gone(children[survivor]), 30, what=f"{survivor} to stop after {victim} died")
    if victim == "worker":
        assert "worker exited with code" in container.log()
        assert container.check() == 1, "the consumer left (its tasks handed back at once)"


def test_the_health_check_fails_while_redis_is_unreachable(redis_url: str, tmp_path: Path) -> None:
    container = Container(redis_url, tmp_path)
    env = {**container.env, "REDIS_URL": "redis://127.0.0.1:1/2", "REDIS_SOCKET_TIMEOUT": "1"}
    cmd = [sys.executable, "-m", "worker.container", "--check"]
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=container.workdir, env=env, capture_output=True, timeout=60)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    container.stop()
