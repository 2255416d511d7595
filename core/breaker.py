"""The circuit breaker around LLM calls, its state in Redis so every worker process and
container shares one breaker (and the reset button reaches all of them).

pybreaker's `call` holds an instance lock for the whole call, so each thread gets its own
`CircuitBreaker` object; they all read and write the same Redis keys.

pybreaker's Redis storage reads the state before every call and writes the failure count back
to 0 after every success: two round trips per call, about 9 % of the worker's CPU per task
(bench/RESULTS.md). The worker's breaker (`cache_seconds` > 0) reads the state and the count
together at most that often per process, and writes the count only when it is not already 0.
Another process's change (an opening, an operator's reset) is thus seen that much later; a
failure and its count are written at once, as before.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pybreaker
import redis
from redis.cluster import RedisCluster

from core.errors import CircuitOpen, LLMProviderProblem, LLMTransient
from core.keys import deployment_keys
from core.redis import SyncClient
from core.settings import Settings

T = TypeVar("T")
log = logging.getLogger("asynctaskflow.worker")


def _not_a_provider_failure(error: BaseException) -> bool:
    """Only an unhealthy provider trips the breaker: not rejected input, not rate limits, not our bugs."""
    return not isinstance(error, (LLMTransient, LLMProviderProblem))


class _Reading:
    """The breaker's state and failure count as this process last read or wrote them."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self.state = pybreaker.STATE_CLOSED
        self.counter = 0

    def fresh(self, storage: pybreaker.CircuitRedisStorage) -> _Reading:
        """Itself, read again through `storage` if the last reading is older than `seconds`.
        While Redis is away the last reading stands, as pybreaker's own storage falls back to a
        state rather than fail the call."""
        with self._lock:
            if time.monotonic() - self._read_at >= self._seconds:
                keys = [storage._namespace("state"), storage._namespace("fail_counter")]
                try:
                    state, counter = storage._redis.mget(keys)
                except redis.RedisError as e:
                    log.warning("breaker state not read (%s); the last reading stands", type(e).__name__)
                    return self
                self.state = state.decode() if isinstance(state, bytes) else state or pybreaker.STATE_CLOSED
                self.counter = int(counter or 0)
                self._read_at = time.monotonic()
        return self

    def forget(self) -> None:
        with self._lock:
            self._read_at = -math.inf


def _storage_client(client: SyncClient) -> tuple[redis.Redis, bool]:
    """The client as pybreaker's storage takes it, and whether it is a cluster's: pybreaker then
    writes the opening time without a WATCH transaction."""
    return cast(redis.Redis, client), isinstance(client, RedisCluster)


class _CachedStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage with reads served from the process's `_Reading`."""

    def __init__(self, client: SyncClient, namespace: str, reading: _Reading) -> None:
        redis_client, cluster = _storage_client(client)
        super().__init__(pybreaker.STATE_CLOSED, redis_client, namespace=namespace, cluster_mode=cluster)
        self._reading = reading

    @property
    def state(self) -> str:
        return self._reading.fresh(self).state

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)  # type: ignore[attr-defined]
        self._reading.forget()

    @property
    def counter(self) -> int:
        return self._reading.fresh(self).counter

    def increment_counter(self) -> None:
        try:
            self._reading.counter = int(self._redis.incr(self._namespace("fail_counter")))
        except redis.RedisError as e:
            log.warning("breaker failure not counted (%s)", type(e).__name__)

    def reset_counter(self) -> None:
        if self._reading.fresh(self).counter:
            super().reset_counter()
            self._reading.counter = 0


class SharedBreaker:
    """One logical breaker over Redis; `call` runs a synchronous function under it."""

    def __init__(self, settings: Settings, client: SyncClient, cache_seconds: float = 0.0) -> None:
        self._client = client  # without decode_responses, as pybreaker's Redis storage expects
        self._namespace = deployment_keys(settings).breaker_namespace
        self._fail_max = settings.circuit_breaker_fail_max
        self.reset_timeout = settings.circuit_breaker_reset_timeout
        self._reading = _Reading(cache_seconds) if cache_seconds else None
        self._local = threading.local()

    def _storage(self) -> pybreaker.CircuitRedisStorage:
        if self._reading is None:
            client, cluster = _storage_client(self._client)
            return pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, client, namespace=self._namespace, cluster_mode=cluster
            )
        return _CachedStorage(self._client, self._namespace, self._reading)

    def _breaker(self) -> pybreaker.CircuitBreaker:
        breaker: pybreaker.CircuitBreaker | None = getattr(self._local, "breaker", None)
        if breaker is None:
            storage = self._storage()
            breaker = pybreaker.CircuitBreaker(
                fail_max=self._fail_max,
                reset_timeout=self.reset_timeout,
                exclude=[_not_a_provider_failure],
                state_storage=storage,
                throw_new_error_on_trip=False,
            )
            self._local.breaker = breaker
        return breaker

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run `func`; raises CircuitOpen (with the seconds left) instead when the breaker is open.

        A provider failure that leaves the breaker open (the call that tripped it, a failed
        half-open probe, or a call already under way when it opened) also becomes CircuitOpen:
        the outage is the provider's, so the task goes back to the queue without spending a retry.
        """
        try:
            return self._breaker().call(func, *args)
        except pybreaker.CircuitBreakerError as e:
            raise CircuitOpen("circuit breaker open: LLM calls paused", retry_after=self.seconds_left()) from e
        except LLMTransient as e:
            if self.state == "open":
                raise CircuitOpen(f"circuit breaker open after: {e}", retry_after=self.seconds_left()) from e
            raise

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half-open', as stored in Redis."""
        return str(self._breaker().current_state)

    def seconds_left(self) -> float:
        """Seconds until an open breaker lets a probe call through (0 when it would now)."""
        opened_at = self._breaker()._state_storage.opened_at
        if opened_at is None:
            return 0.0
        return max(0.0, opened_at.timestamp() + self.reset_timeout - time.time())

    def close(self) -> None:
        """Operator reset: every process sees the breaker closed at once. The stored opening time
        goes too: pybreaker only ever moves it forward, so a pause's far-future time would
        otherwise hold the next trip open until the pause's end."""
        breaker = self._breaker()
        breaker.close()
        storage = cast(pybreaker.CircuitRedisStorage, breaker._state_storage)
        self._client.delete(storage._namespace("opened_at"))
        if self._reading is not None:
            self._reading.forget()
