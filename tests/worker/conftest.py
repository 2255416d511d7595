"""What the worker's tests share: the LLM stand-in, one per module (a server start per test cost
more than most of these tests), forgetting its calls before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stub_llm import StubLLM


@pytest.fixture(scope="module")
def module_stub() -> Iterator[StubLLM]:
    with StubLLM() as llm:
        yield llm


@pytest.fixture
def stub(module_stub: StubLLM) -> StubLLM:
    """The module's stand-in, as new: no calls, no conversation, no fault."""
    module_stub.reset()
    return module_stub
