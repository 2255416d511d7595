"""The shared token bucket (take_token.lua), on fakeredis and a real Redis."""

from __future__ import annotations

import time

from core.store import TaskStore


def test_burst_is_granted_then_the_wait_is_exact(store: TaskStore) -> None:
    assert [store.take_token("llm", rate=10, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = store.take_token("llm", rate=10, burst=3)
    assert 0.05 < wait <= 0.1, "one token comes back every 0.1 s"
    assert store.take_token("llm", rate=10, burst=3, cost=2) > wait, "a refusal takes nothing"


def test_tokens_refill_with_time_up_to_the_burst(store: TaskStore) -> None:
    for _ in range(2):
        store.take_token("api", rate=20, burst=2)
    time.sleep(0.2)  # four tokens' worth of time, but the bucket holds two
    assert [store.take_token("api", rate=20, burst=2) for _ in range(3)][:2] == [0.0, 0.0]
    assert store.take_token("api", rate=20, burst=2) > 0


def test_buckets_are_separate_and_expire_when_idle(store: TaskStore) -> None:
    assert store.take_token("a", rate=1, burst=1) == 0.0
    assert store.take_token("a", rate=1, burst=1) > 0
    assert store.take_token("b", rate=1, burst=1) == 0.0
    ttl = store.r.pttl(store.keys.rate_bucket("a"))
    assert 0 < ttl <= 2000, "full again after burst / rate seconds, then the key goes"


def test_a_429_halves_the_pace_once_per_second_down_to_the_floor(store: TaskStore) -> None:
    assert store.take_token("llm", rate=10, burst=1) == 0.0
    assert store.adapt_rate("llm", limited=True) == 0.5
    assert store.adapt_rate("llm", limited=True) == 0.5, "429s within a second are one signal"
    wait = store.take_token("llm", rate=10, burst=1)
    assert 0.15 < wait <= 0.2, "the bucket was emptied and refills at half the rate"
    for _ in range(5):
        store.r.hset(store.keys.rate_bucket("llm"), "cut_at", 0)  # as if a second had passed
        store.adapt_rate("llm", limited=True, floor=0.1)
    assert float(store.r.hget(store.keys.rate_bucket("llm"), "factor")) == 0.1
    assert store.r.pttl(store.keys.rate_bucket("llm")) > 60_000, "a slowed bucket remembers for a while"


def test_successes_bring_the_pace_back_step_by_step(store: TaskStore) -> None:
    assert store.adapt_rate("llm", limited=False) == 1.0, "a success at full pace changes nothing"
    assert not store.r.exists(store.keys.rate_bucket("llm"))
    store.adapt_rate("llm", limited=True)
    steps = [store.adapt_rate("llm", limited=False, step=0.2) for _ in range(3)]
    assert steps == [0.7, 0.9, 1.0]
