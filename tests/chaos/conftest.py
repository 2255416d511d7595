"""Fixtures of the chaos suite: a private redis-server with AOF per scenario (it gets restarted),
the LLM stand-in with 50–300 ms latency, and the real stack with two worker containers.

`CHAOS_PROFILE=long` (make chaos) runs the sizes the README's table reports; the default short
profile keeps `make test` quick while exercising every scenario."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.books import RESULTS, Books, Figures
from tests.integration.stack import Stack
from tests.stub_llm import StubLLM
from utils import redis_server


@dataclass(frozen=True)
class Profile:
    name: str
    tasks: int  # per scenario
    kill_tasks: int  # the kill -9 loop's load
    kill_every: tuple[float, float]  # seconds between kills (drawn uniformly)
    kill_concurrency: int  # slots per container in the kill loop, so the load lasts through the kills
    outage: float  # seconds of LLM outage
    breaker_reset: float  # CIRCUIT_BREAKER_RESET_TIMEOUT during the outage


PROFILES = {
    "short": Profile("short", 120, kill_tasks=300, kill_every=(1, 2.5), kill_concurrency=4, outage=6, breaker_reset=1),
    "long": Profile("long", 1000, kill_tasks=2000, kill_every=(2, 5), kill_concurrency=8, outage=60, breaker_reset=5),
}

# Short timings so recovery happens within seconds (each scenario may override any of them).
CHAOS_ENV = {
    "CELERY_WORKER_CONCURRENCY": "16",
    "CELERY_TASK_TIME_LIMIT": "5",
    "CELERY_TASK_SOFT_TIME_LIMIT": "4",
    "TASK_LEASE_MARGIN": "1",
    "MAX_RETRIES": "3",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="session")
def profile() -> Profile:
    return PROFILES[os.environ.get("CHAOS_PROFILE", "short")]


class ChaosRedis:
    """A private redis-server with AOF on, which a scenario may restart on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = redis_server.free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/2"
        self.proc = redis_server.start(self.port, workdir, appendonly=True)

    def stop(self) -> None:
        """SIGTERM: Redis writes its AOF and exits, as an orchestrator's restart does."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)

    def start(self) -> None:
        self.proc = redis_server.start(self.port, self.workdir, appendonly=True)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def chaos_redis(tmp_path: Path) -> Iterator[ChaosRedis]:
    server = ChaosRedis(tmp_path / "redis")
    yield server
    server.close()


@pytest.fixture
def stub() -> Iterator[StubLLM]:
    with StubLLM(delay=0.05, max_delay=0.3) as llm:
        yield llm


@pytest.fixture(params=["redis", "cluster"])
def deployment(request: pytest.FixtureRequest, chaos_redis: ChaosRedis) -> dict[str, str]:
    """Where the data lives: the private Redis, or the session's 3-master Redis Cluster holding 3
    shards (Celery's broker then in database 3 of the private Redis)."""
    if request.param == "redis":
        return {}
    if request.node.get_closest_marker("one_redis"):
        pytest.skip("this scenario restarts the one Redis (tests/ha covers a cluster node's loss)")
    ports = request.getfixturevalue("redis_cluster")
    return {
        "REDIS_CLUSTER_NODES": ",".join(f"127.0.0.1:{port}" for port in ports),
        "REDIS_URL": f"redis://127.0.0.1:{ports[0]}/0",
        "CELERY_BROKER_URL": chaos_redis.url.rsplit("/", 1)[0] + "/3",
        "REDIS_SHARDS": "3",
    }


@pytest.fixture
def make_books(
    chaos_redis: ChaosRedis, deployment: dict[str, str], stub: StubLLM, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Books]]:
    """Start the real stack (two worker containers, a scheduler, the API) with env overrides and
    open its books; everything is stopped at the end."""
    stacks: list[Stack] = []

    def build(pairs: tuple[str, ...] = ("a", "b"), schedulers: int = 1, **overrides: str) -> Books:
        stack = Stack(chaos_redis.url, stub.url, tmp_path, **{**CHAOS_ENV, **deployment, **overrides})
        stacks.append(stack)
        for pair in pairs:
            stack.start("worker", pair)
            stack.start("consumer", pair)
        for pair in "abcdef"[:schedulers]:
            stack.start("scheduler", pair)
        stack.start("api")
        stack.wait_started(pairs)
        return Books(request.node.name.removeprefix("test_"), stack, stub)

    yield build
    for stack in stacks:
        stack.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section(f"chaos figures ({os.environ.get('CHAOS_PROFILE', 'short')} profile)")
    terminalreporter.write_line(Figures.header())
    for figures in RESULTS:
        terminalreporter.write_line(figures.row())
