"""Shared fixtures: a private redis-server per test session, on a free port, never the user's DB 0."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from core.keys import Keys
from core.store import TaskStore
from tests.declared_keys import checked
from tests.stub_llm import StubLLM
from utils import redis_server


@pytest.fixture(autouse=True, scope="session")
def scripts_touch_only_their_keys() -> Iterator[None]:
    """Every script run on fakeredis, in any test, touches only the keys its call named."""
    with checked():
        yield


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = redis_server.free_port()
    proc = redis_server.start(port, tmp_path_factory.mktemp("redis"))
    yield proc, port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """A private Redis Cluster of 3 masters (no replicas) on free ports: the ports of its nodes."""
    nodes = redis_server.start_cluster(tmp_path_factory.mktemp("cluster"), masters=3)
    yield [port for _, port in nodes]
    redis_server.stop(nodes)


def cluster_client(ports: list[int]) -> RedisCluster:
    """A client of the private cluster that knows only one node at first, as REDIS_CLUSTER_NODES may."""
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", ports[0])], decode_responses=True)


@pytest.fixture(scope="session")
def redis_url(redis_proc: tuple[subprocess.Popen[bytes], int]) -> str:
    """Database 2 of the private server (Celery's broker uses database 3 in the tests)."""
    return f"redis://127.0.0.1:{redis_proc[1]}/2"


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def key_prefix() -> str:
    """A random prefix per test, so tests that share a database never see each other's keys."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture(params=["fakeredis", "redis"])
def any_redis(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.Redis]:
    """The same data-layer test on fakeredis (Lua through lupa) and on a real Redis."""
    if request.param == "fakeredis":
        client = fakeredis.FakeRedis(decode_responses=True)
    else:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def store(any_redis: redis.Redis, key_prefix: str) -> TaskStore:
    return TaskStore(any_redis, Keys(key_prefix))


@pytest.fixture
def stub() -> Iterator[StubLLM]:
    """The loopback LLM stand-in, fresh for each test (a module may keep one for all its tests)."""
    with StubLLM() as llm:
        yield llm


@pytest.fixture(autouse=True)
def _no_user_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's `.env` or key: settings come from each test only."""
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.chdir(Path(__file__).parent)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")


# Tests that start a stack of processes (API, Celery workers, consumers, scheduler, Sentinels,
# nginx, a browser): `make test` runs them one at a time after the rest, `make test-fast` leaves
# them out. By folder, and by the markers such tests carry, so a new folder of them is caught too.
STACK_PATHS = ("integration", "chaos", "e2e", "fuzz", "deploy", "ha", "worker/test_container.py")
STACK_MARKERS = ("integration", "chaos", "e2e", "fuzz")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        where = item.path.relative_to(tests).as_posix()
        in_folder = any(where == p or where.startswith(p + "/") for p in STACK_PATHS)
        if in_folder or any(item.get_closest_marker(m) for m in STACK_MARKERS):
            item.add_marker(pytest.mark.stack)
