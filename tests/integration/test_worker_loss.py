"""A Celery worker killed on its own, run as the Procfile runs it (its own process beside its
consumer): the consumer learns within seconds that the worker is gone, or was replaced, and
hands its tasks back instead of leaving them ACTIVE until their lease runs out (issue 21, 5b)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from core.states import State
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration

# A lease far longer than the test: only the consumer's own detection can bring the tasks back.
LONG_LEASE = {"CELERY_TASK_TIME_LIMIT": "120", "CELERY_TASK_SOFT_TIME_LIMIT": "110", "TASK_LEASE_MARGIN": "600"}


def inflight(stack: Stack) -> list[str]:
    return [t for c in stack.redis.smembers(stack.keys.consumers) for t in stack.store.inflight_ids(c)]


def reached_llm(stub: StubLLM, tag: str) -> bool:
    return any(f"[[tag:{tag}]]" in call["content"] for call in stub.calls())


def _loaded_stack(make_stack: Callable[..., Stack], delay: float) -> tuple[Stack, list[str]]:
    """Two threads and two prefetched: four tasks in flight, two of them running (slow calls)."""
    stack = make_stack(CELERY_WORKER_CONCURRENCY="2", WORKER_PREFETCH="2", **LONG_LEASE).start_all()
    ids = [stack.submit(f"[[delay:{delay:g}]] [[tag:q{i}]] document {i}") for i in range(6)]
    wait_until(lambda: len(inflight(stack)) == 4, 60, what="four tasks in flight")
    return stack, ids


def test_a_killed_worker_hands_its_tasks_back_within_seconds(make_stack: Callable[..., Stack], stub: StubLLM) -> None:
    stack, ids = _loaded_stack(make_stack, delay=10)
    held = inflight(stack)
    wait_until(lambda: sum(reached_llm(stub, f"q{ids.index(t)}") for t in held) == 2, 60, what="two calls running")

    killed_at = time.monotonic()
    stack.kill("worker-a")  # SIGKILL; the consumer lives on, its heartbeat too
    # HEARTBEAT_TTL is 2 s here: the worker's beat expires, and the consumer looks every 0.25 s.
    wait_until(lambda: not inflight(stack), 30, what="the consumer to hand its tasks back")
    assert time.monotonic() - killed_at < 15, "learnt within seconds, not after the lease"
    assert stack.live_consumers() == 1, "the consumer itself stayed alive"
    time.sleep(1.0)
    assert not inflight(stack), "no work is taken while the worker is gone"

    tasks = {tid: stack.store.get(tid) for tid in ids}
    assert {t.state for t in tasks.values()} == {State.PENDING}
    for tid in held:
        task = tasks[tid]
        if reached_llm(stub, f"q{ids.index(tid)}"):
            assert (task.retry_count, task.error_type) == (1, "worker_lost"), "it ran: counted as the reaper would"
        else:
            assert (task.retry_count, task.error_type) == (0, "worker_lost"), "it never reached the LLM: no retry"
    assert sum(t.retry_count for t in tasks.values()) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="Celery warns only when its worker runs as root (or sudo/wheel)")
def test_a_worker_run_as_root_says_so_in_one_line(make_stack: Callable[..., Stack], stub: StubLLM) -> None:
    """Issue 21, 4: not Celery's six-line SecurityWarning (our messages are JSON, never pickle)."""
    stack = make_stack().start_all()
    log = stack.log("worker-a")
    assert "superuser privileges" not in log and "SecurityWarning" not in log
    assert log.count("the Celery worker runs as root") == 1


def test_a_worker_restarted_at_once_gets_the_work_back(make_stack: Callable[..., Stack], stub: StubLLM) -> None:
    stack, ids = _loaded_stack(make_stack, delay=2)
    old = stack.store.worker_beat(f"{stack.prefix}a")
    stack.kill("worker-a")
    stack.start("worker", "a")  # restarted at once, as honcho, systemd or Kubernetes would
    wait_until(lambda: stack.store.worker_beat(f"{stack.prefix}a") not in (None, old), 180, what="the new worker")

    states = stack.wait_terminal(ids, timeout=60)
    assert set(states.values()) == {State.COMPLETED}
    assert max(stack.store.get(tid).retry_count for tid in ids) <= 1
    assert "its worker is gone or was replaced" in stack.log("consumer-a")
    stack.assert_nothing_left()
