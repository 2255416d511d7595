"""The shared circuit breaker on real processes: two worker containers, one breaker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from core.states import State
from tests.core.helpers import queued
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration


def breaker_seen_by_consumers(stack: Stack) -> list[str]:
    beats = [stack.redis.get(stack.keys.heartbeat(c)) for c in stack.redis.smembers(stack.keys.consumers)]
    return [json.loads(b)["breaker"] for b in beats if b]


def test_open_breaker_stops_every_consumer_without_spending_retries(
    make_stack: Callable[..., Stack], stub: StubLLM
) -> None:
    stack = make_stack(
        CELERY_WORKER_CONCURRENCY="1", CIRCUIT_BREAKER_FAIL_MAX="3", CIRCUIT_BREAKER_RESET_TIMEOUT="60"
    ).start_all(pairs=("a", "b"))
    ids = [stack.submit(f"[[status:500]] outage {i}") for i in range(20)]

    wait_until(lambda: breaker_seen_by_consumers(stack) == ["open", "open"], 15, what="both consumers to see it open")
    calls_at_open = len(stub.calls())
    queued_at_open = len(queued(stack.redis, stack.keys))
    time.sleep(2.0)

    assert len(stub.calls()) == calls_at_open, "no LLM call while the breaker is open"
    assert calls_at_open <= 3 + 2, "at most the threshold plus one call per slot in flight"
    assert len(queued(stack.redis, stack.keys)) == queued_at_open >= 20 - 5
    waiting = [stack.store.get(tid) for tid in queued(stack.redis, stack.keys)]
    assert {t.state for t in waiting} == {State.PENDING} and {t.retry_count for t in waiting} == {0}
    spent = sum(stack.store.get(tid).retry_count for tid in ids)
    assert spent <= calls_at_open, "only calls that reached the provider spent retries"
