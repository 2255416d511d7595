"""A Redis Cluster master fails over to its replica under load (issue 19): the whole stack in
cluster mode on 3 masters with two replicas each, while a client submits steadily and tasks run,
every write acknowledged by a replica (REDIS_MIN_REPLICAS_ACK=1). The master serving the
deployment's slot is killed (kill -9); a replica takes over, the other follows it. No accepted
task lost, no 500, no process died. (With one replica per master, the promoted master has none
left, and acknowledged writes wait, 503, until the old master returns as its replica.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.keys import CLUSTER_TAG
from core.redis import cluster_ok
from tests.ha.test_failover import SETTLE, Client, audit
from tests.ha.test_failover import slow_stub as slow_stub  # the fixture
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM
from utils import redis_server

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[int, redis_server.Node]]:
    """3 masters with 2 replicas each; a node fails after 2 s unanswered (a replica's election follows)."""
    nodes = redis_server.start_cluster(tmp_path / "cluster", masters=3, replicas=2, node_timeout_ms=2000)
    yield {port: (proc, port) for proc, port in nodes}
    redis_server.stop(nodes)


def _master_of_tag(port: int) -> int:
    """The port of the master serving the deployment's hash tag, as node `port` sees it."""
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
    slot = int(client.execute_command("CLUSTER KEYSLOT", "{" + CLUSTER_TAG + "}"))
    for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
        if start <= slot <= end:
            return int(master[1])
    raise AssertionError(f"slot {slot} is served by no master")


def _promoted(ports: list[int], killed: int) -> bool:
    """Every living node names a new master for the tag and reports the cluster ok."""
    try:
        return all(_master_of_tag(port) != killed and cluster_ok(port) for port in ports)
    except (redis.RedisError, OSError):
        return False


@pytest.mark.mostly_waiting
def test_a_cluster_failover_loses_no_accepted_task(
    cluster: dict[int, redis_server.Node], slow_stub: StubLLM, redis_url: str, tmp_path: Path
) -> None:
    ports = list(cluster)
    stack = Stack(
        f"redis://127.0.0.1:{ports[0]}/0", slow_stub.url, tmp_path,
        REDIS_CLUSTER_NODES=",".join(f"127.0.0.1:{port}" for port in ports),
        CELERY_BROKER_URL=redis_url.rsplit("/", 1)[0] + "/5", REDIS_MIN_REPLICAS_ACK="1",
        HEARTBEAT_INTERVAL="1", HEARTBEAT_TTL="10",
    ).start_all()  # fmt: skip
    client = Client(f"http://127.0.0.1:{stack.api_port}")
    client.thread.start()
    try:
        time.sleep(SETTLE)
        killed = _master_of_tag(ports[0])
        client.begin("kill -9 of the cluster master")
        cluster[killed][0].kill()
        living = [port for port in ports if port != killed]
        wait_until(lambda: _promoted(living, killed), 120, interval=0.5, what="the replica to take over")
        time.sleep(SETTLE)
    finally:
        client.stop.set()
        client.thread.join(150)
    try:
        audit(client, stack, slow_stub)
    finally:
        stack.stop()
