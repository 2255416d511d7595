"""Fixtures for tests that run the real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.stack import Stack
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration


@pytest.fixture
def stub() -> Iterator[StubLLM]:
    llm = StubLLM(delay=0.05)
    llm.start()
    yield llm
    llm.stop()


@pytest.fixture
def make_stack(redis_url: str, stub: StubLLM, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Build a Stack (not yet started) with env overrides; every stack is stopped at the end."""
    stacks: list[Stack] = []

    def build(**overrides: str) -> Stack:
        stack = Stack(redis_url, stub.url, tmp_path, **overrides)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.stop()


@pytest.fixture
def make_cluster_stack(make_stack: Callable[..., Stack], redis_url: str) -> Callable[..., Stack]:
    """Build a Stack on a Redis Cluster (the nodes' ports): REDIS_CLUSTER_NODES names two of them
    as seeds, and Celery's broker is database 5 of the private plain Redis (kombu has no cluster
    transport)."""

    def build(ports: list[int], **overrides: str) -> Stack:
        seeds = ",".join(f"127.0.0.1:{port}" for port in ports[:2])
        broker = redis_url.rsplit("/", 1)[0] + "/5"
        env = {"REDIS_URL": f"redis://127.0.0.1:{ports[0]}/0", "CELERY_BROKER_URL": broker}
        return make_stack(REDIS_CLUSTER_NODES=seeds, **{**env, **overrides})

    return build
