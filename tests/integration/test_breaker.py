"""The shared circuit breaker on real processes: two worker containers, one breaker."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
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
    assert {t.state for t in waiting} == {State.PENDING}
    # A task that failed once before the breaker opened may wait here too (retried, claimed, then
    # handed back at the gate): a task spends at most a retry per call that reached the provider
    # (the call that left the breaker open spends none), and none while waiting.
    reached = Counter(int(m.group(1)) for c in stub.calls() if (m := re.search(r"outage (\d+)\b", c["content"])))
    overspent = [t.id for t in waiting if t.retry_count > reached[ids.index(t.id)]]
    assert overspent == [], "a waiting task spent a retry with no call to show for it"
    spent = sum(stack.store.get(tid).retry_count for tid in ids)
    assert spent <= calls_at_open, "only calls that reached the provider spent retries"
