"""The managed-Redis case: a plain REDIS_URL whose server is demoted to a replica (the endpoint
moved to a promoted one). Writes meet READONLY: the API answers 503, never a 500, and the
clients reconnect, so once the address serves a master again everything goes on without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.main import create_app
from core.keys import Keys
from core.redis import sync_client
from core.settings import Settings
from core.states import State
from core.store import TaskStore, new_token
from core.task import Task
from tests.api.conftest import serve
from tests.ha.aio import run_async
from tests.ha.proxy import MovableEndpoint
from tests.ha.topology import START_WAIT, Node, wait_for
from utils import redis_server

pytestmark = pytest.mark.integration
KEYS = Keys("moved:")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Two servers: the first a master, the second its replica."""
    ports = [redis_server.free_port(), redis_server.free_port()]
    nodes = []
    for i, port in enumerate(ports):
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path / str(port))]
        if i:
            args += ["--replicaof", "127.0.0.1", str(ports[0])]
        nodes.append(Node(port, tmp_path / str(port), args))
    for node in nodes:
        node.start()
    wait_for(lambda: all(n.client().ping() for n in nodes), "the two servers", START_WAIT)
    yield nodes[0], nodes[1]
    for node in nodes:
        node.stop()


def _swap(demote: Node, promote: Node) -> None:
    promote.client().replicaof("NO", "ONE")
    demote.client().replicaof("127.0.0.1", promote.port)


@pytest.fixture
def endpoint(pair: tuple[Node, Node]) -> Iterator[MovableEndpoint]:
    proxy = MovableEndpoint(pair[0].port)
    yield proxy
    proxy.close()


def _fail_over(pair: tuple[Node, Node], endpoint: MovableEndpoint) -> None:
    """What a managed service does: promote the replica, demote the old master, move the address."""
    old, new = pair
    _swap(old, new)
    endpoint.move_to(new.port)


def test_a_moved_endpoint_is_a_503_at_most_then_the_api_goes_on(
    pair: tuple[Node, Node], endpoint: MovableEndpoint
) -> None:
    """The API's pooled connections still reach the demoted server; READONLY drops them, and the
    next connection reaches the new master through the same address, without a restart."""
    run_async(_submit_across_a_move(pair, endpoint))


async def _submit_across_a_move(pair: tuple[Node, Node], endpoint: MovableEndpoint) -> None:
    settings = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{endpoint.port}/2", redis_key_prefix="moved:")
    async for client in serve(create_app(settings)):
        assert (await client.post("/api/v1/tasks/summarize/", json={"content": "Before."})).status_code == 202
        _fail_over(pair, endpoint)
        statuses = []
        for _ in range(3):
            response = await client.post("/api/v1/tasks/summarize/", json={"content": "After."})
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert response.json()["code"] == "redis_unavailable" and response.headers["Retry-After"]
        assert set(statuses) <= {202, 503} and statuses[-1] == 202, statuses
        assert pair[1].client(db=2).exists(KEYS.task(response.json()["task_id"])) == 1, "stored on the new master"


def test_a_worker_outcome_lands_on_the_new_master(pair: tuple[Node, Node], endpoint: MovableEndpoint) -> None:
    """The worker's client meets READONLY on its pooled connection, reconnects through the moved
    address and records the outcome there."""
    settings = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{endpoint.port}/2", redis_outage_patience=30)
    store = TaskStore(sync_client(settings, patient=True), KEYS)
    store.r.flushdb()
    task = store.create(Task(id="t1", task_type="summarize", content="Some text."))
    token = new_token()
    assert store.claim("c1", token, prefer_retry=False).task_id == task.id
    replica = pair[1].client(db=2)
    wait_for(lambda: replica.hget(KEYS.task("t1"), "state") == "ACTIVE", "the claim to replicate", START_WAIT)
    _fail_over(pair, endpoint)
    store.complete(task.id, "c1", token, "done", "stub")
    assert replica.hget(KEYS.task("t1"), "state") == State.COMPLETED.value
