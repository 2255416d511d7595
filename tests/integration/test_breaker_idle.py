"""Issue 21, 5, as a user saw it: an idle stack, the breaker opened by an operator, a task
submitted 0.5 s later. No consumer takes it (it went PENDING -> ACTIVE -> PENDING before: the
idle consumer blocked in its wait took it); it starts as soon as the breaker is reset."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from core.states import State
from tests.core.helpers import queued
from tests.integration.stack import Stack
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration


def test_an_idle_consumer_takes_nothing_while_the_breaker_is_open(
    make_stack: Callable[..., Stack], stub: StubLLM
) -> None:
    # Every consumer idle, blocked in Redis for 5 s at a time; no probe lets a task through meanwhile.
    stack = make_stack(CONSUMER_BLOCK_SECONDS="5", CIRCUIT_BREAKER_RESET_TIMEOUT="600").start_all(pairs=("a", "b"))
    time.sleep(1.0)  # both consumers are blocked waiting for work now

    assert stack.http.post("/health/workers/open-circuit-breaker").json()["state"] == "open"
    time.sleep(0.5)
    task_id = stack.submit("Submitted while the breaker is open. It must wait in the queue.")
    time.sleep(6.0)  # longer than a blocking wait: each consumer has woken at least once

    task = stack.task(task_id)
    assert (task["state"], task["retry_count"]) == ("PENDING", 0)
    assert stack.store.get(task_id).attempts == 0, "never claimed: no PENDING -> ACTIVE -> PENDING"
    assert queued(stack.redis, stack.keys) == [task_id], "waiting in the queue"
    assert stub.calls() == []

    assert stack.http.post("/health/workers/reset-circuit-breaker").json()["state"] == "closed"
    assert stack.wait_terminal([task_id], timeout=60) == {task_id: State.COMPLETED}
    assert stack.store.get(task_id).attempts == 1
