"""The worker's shared breaker on a real Redis: its reads of the state are cached per process,
yet failures are counted across processes at once, a success clears them, and an opening by
anyone is seen within the cache period. Each `SharedBreaker` here stands for one process."""

from __future__ import annotations

import time

import pytest
import redis

from core.breaker import SharedBreaker
from core.errors import CircuitOpen, LLMTransient
from core.settings import Settings


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings(redis_url=redis_url, redis_key_prefix=key_prefix, circuit_breaker_fail_max=3)


def breaker(settings: Settings, cache_seconds: float = 0.0) -> SharedBreaker:
    return SharedBreaker(settings, redis.Redis.from_url(settings.redis_url), cache_seconds)


def calls(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget", "set", "incr")}


def fail() -> None:
    raise LLMTransient("HTTP 502")


def test_successes_read_once_per_period_and_write_nothing(settings: Settings, real_redis: redis.Redis) -> None:
    worker = breaker(settings, cache_seconds=60)
    worker.call(lambda: None)  # the first call reads
    before = calls(real_redis)
    for _ in range(50):
        assert worker.call(lambda: "answer") == "answer"
    assert calls(real_redis) == before, "no round trip for a success while the count is 0"
    assert breaker(settings).state == "closed"


def test_failures_from_every_process_count_at_once_and_open_it(settings: Settings) -> None:
    first, second = breaker(settings, cache_seconds=60), breaker(settings, cache_seconds=60)
    first.call(lambda: None)
    second.call(lambda: None)  # both readings are now cached as closed, count 0
    for worker in (first, second):
        with pytest.raises(LLMTransient):
            worker.call(fail)
    with pytest.raises(CircuitOpen):  # the third consecutive failure, counted in Redis, opens it
        first.call(fail)
    assert breaker(settings).state == "open"


def test_a_success_clears_the_failure_count(settings: Settings, real_redis: redis.Redis) -> None:
    worker, operator = breaker(settings, cache_seconds=60), breaker(settings)
    for _ in range(2):
        with pytest.raises(LLMTransient):
            worker.call(fail)
    worker.call(lambda: None)
    with pytest.raises(LLMTransient):
        worker.call(fail)
    assert operator.state == "closed", "two failures, a success, one failure: not three in a row"


def test_an_opening_elsewhere_is_seen_within_the_cache_period(settings: Settings) -> None:
    worker, operator = breaker(settings, cache_seconds=0.2), breaker(settings)
    worker.call(lambda: None)
    operator._breaker().open()
    time.sleep(0.25)
    with pytest.raises(CircuitOpen):
        worker.call(lambda: None)
    operator.close()
    time.sleep(0.25)
    assert worker.call(lambda: "again") == "again", "and the operator's reset as well"
