"""Crash safety on real processes: kill -9 and SIGTERM mid-work lose nothing, and a stale
attempt's late result is refused."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from core.states import State
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration


def active_count(stack: Stack) -> int:
    return int(stack.redis.zcard(stack.keys.state_index(State.ACTIVE)))


def lost_once(task: dict) -> bool:
    """A completed task keeps no error of its own (issue 16): its last failed attempt, the lost
    one, is in `errors`."""
    return task["error_type"] is None and bool(task["errors"]) and task["errors"][-1]["error_type"] == "worker_lost"


def test_consumer_killed_with_tasks_in_flight_loses_nothing(make_stack: Callable[..., Stack], stub: StubLLM) -> None:
    stack = make_stack(CELERY_WORKER_CONCURRENCY="4", WORKER_PREFETCH="0").start_all()
    ids = [stack.submit(f"[[delay:4]] [[tag:k{i}]] slow document {i}") for i in range(8)]
    wait_until(lambda: active_count(stack) == 4, 10, what="four tasks in flight")

    stack.kill("consumer-a")  # SIGKILL: no drain, no goodbye
    stack.start("consumer", "a")

    states = stack.wait_terminal(ids, timeout=60)
    assert set(states.values()) == {State.COMPLETED}
    recovered = [t for t in map(stack.task, ids) if lost_once(t)]
    assert len(recovered) == 4, "the four tasks of the dead consumer are recovered, no more"
    assert all(t["retry_count"] == 1 for t in recovered)
    # The first attempts were still running in the Celery worker; their late results were refused.
    wait_until(lambda: stack.log("worker-a").count("result of stale attempt") == 4, 10, what="4 refusals")
    stack.assert_nothing_left()


def test_celery_worker_killed_mid_task_loses_nothing(make_stack: Callable[..., Stack], stub: StubLLM) -> None:
    stack = make_stack(CELERY_WORKER_CONCURRENCY="4", WORKER_PREFETCH="0").start_all()
    ids = [stack.submit(f"[[delay:1]] [[tag:w{i}]] document {i}") for i in range(8)]
    wait_until(lambda: active_count(stack) == 4, 10, what="four tasks in flight")

    stack.kill("worker-a")
    stack.start("worker", "a")

    # Their Celery messages died with the worker; the lease reaper gives them back.
    states = stack.wait_terminal(ids, timeout=60)
    assert set(states.values()) == {State.COMPLETED}
    lost = [t for t in map(stack.task, ids) if lost_once(t)]
    assert len(lost) == 4 and all(t["retry_count"] == 1 for t in lost)
    stack.assert_nothing_left()


def test_sigterm_lets_in_flight_tasks_finish_and_leaves_nothing_stranded(
    make_stack: Callable[..., Stack], stub: StubLLM
) -> None:
    stack = make_stack(CELERY_WORKER_CONCURRENCY="4", WORKER_PREFETCH="0").start_all()
    ids = [stack.submit(f"[[delay:1]] [[tag:g{i}]] document {i}") for i in range(10)]
    wait_until(lambda: active_count(stack) == 4, 10, what="four tasks in flight")

    stack.kill("consumer-a", signal.SIGTERM)

    assert stack.procs["consumer-a"].returncode == 0
    finished = [tid for tid, s in stack.states(ids).items() if s == State.COMPLETED]
    assert len(finished) >= 4, "tasks in flight at SIGTERM finish within the grace period"
    assert stack.live_consumers() == 0
    assert all(stack.store.inflight_count(c) == 0 for c in stack.redis.smembers(stack.keys.consumers))
    stack.start("consumer", "a")
    states = stack.wait_terminal(ids, timeout=30)
    assert set(states.values()) == {State.COMPLETED}
    assert all(stack.task(tid)["retry_count"] == 0 for tid in ids), "a graceful stop spends no retry"
    stack.assert_nothing_left()
