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
