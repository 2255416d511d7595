"""The whole path on real processes: HTTP submit → consumer → Celery → loopback LLM → result."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.states import State
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration


def calls_for(stub: StubLLM, marker: str) -> list[dict]:
    return [c for c in stub.calls() if marker in c["content"]]


def test_two_hundred_tasks_complete_with_the_llm_answer_in_fifo_order(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack().start_all()
    ids = [stack.submit(f"[[tag:n{i}]] Document number {i}. It says something.") for i in range(200)]

    states = stack.wait_terminal(ids, timeout=90)

    assert set(states.values()) == {State.COMPLETED}
    tasks = [stack.task(tid) for tid in ids]
    assert [t["result"] for t in tasks] == [f"summary:n{i}" for i in range(200)]
    assert {t["provider"] for t in tasks} == {"openrouter"}
    started = [stack.store.get(tid).started_at for tid in ids]
    assert started == sorted(started), "tasks must start in the order they were submitted"
    stack.assert_nothing_left()


def test_each_failure_kind_ends_in_its_state(make_stack: Callable[..., Stack], stub: StubLLM) -> None:
    # One slot only: the tasks that succeed meanwhile prove a rate-limited task does not hold it.
    # A generous fleet limit, so the 429 does not pace the bystanders (issue 16's adaptive pacing
    # would, without a configured limit), and a short rate-limit backoff: Retry-After decides.
    stack = make_stack(
        CELERY_WORKER_CONCURRENCY="1", LLM_RATE_LIMIT_REQUESTS="100000", RATE_LIMIT_BACKOFF_BASE="1"
    ).start_all()
    flaky = stack.submit("[[fail:2]] flaky provider")
    broken = stack.submit("[[status:500]] broken provider")
    rejected = stack.submit("[[400]] content the provider refuses")
    limited = stack.submit("[[429:2]] rate limited once")
    waiting = wait_until(lambda: (t := stack.task(limited))["state"] == "SCHEDULED" and t, 10, what="the 429")
    assert waiting["error_type"] == "rate_limited"
    bystanders = [stack.submit(f"[[tag:b{i}]] bystander {i}") for i in range(3)]

    stack.wait_terminal([flaky, broken, rejected, limited, *bystanders], timeout=60)

    assert (stack.task(flaky)["state"], stack.task(flaky)["retry_count"]) == ("COMPLETED", 2)
    assert len(calls_for(stub, "flaky provider")) == 3
    dead = stack.task(broken)
    assert (dead["state"], dead["retry_count"], dead["error_type"]) == ("DLQ", 3, "transient")
    assert len(calls_for(stub, "broken provider")) == 4
    failed = stack.task(rejected)
    assert (failed["state"], failed["retry_count"], failed["error_type"]) == ("FAILED", 0, "input_rejected")
    assert len(calls_for(stub, "content the provider refuses")) == 1
    first, second = calls_for(stub, "rate limited once")
    assert second["at"] - first["at"] >= 2.0, "retried before the provider's Retry-After"
    assert stack.task(limited)["state"] == "COMPLETED"
    bystander_calls = [c["at"] for i in range(3) for c in calls_for(stub, f"bystander {i}")]
    assert max(bystander_calls) < second["at"], "the only worker slot was held during Retry-After"
    stack.assert_nothing_left()


def test_prefetched_tasks_wait_for_a_thread_and_all_finish(make_stack: Callable[..., Stack], stub: StubLLM) -> None:
    """WORKER_PREFETCH: the consumer keeps two tasks beyond the worker's two threads; they are
    ACTIVE while they wait, and no more than two calls are ever under way."""
    stack = make_stack(CELERY_WORKER_CONCURRENCY="2", WORKER_PREFETCH="2").start_all()
    ids = [stack.submit(f"[[delay:0.5]] [[tag:p{i}]] prefetched {i}") for i in range(8)]
    wait_until(lambda: int(stack.redis.zcard(stack.keys.state_index(State.ACTIVE))) == 4, 10, what="4 ACTIVE")

    states = stack.wait_terminal(ids, timeout=30)

    assert set(states.values()) == {State.COMPLETED}
    assert all(stack.task(tid)["retry_count"] == 0 for tid in ids)
    arrivals = sorted(c["at"] for c in calls_for(stub, "prefetched"))
    assert len(arrivals) == 8
    gaps = [arrivals[i + 2] - arrivals[i] for i in range(len(arrivals) - 2)]
    assert min(gaps) >= 0.45, "a third call overlapped the first two"
    stack.assert_nothing_left()
