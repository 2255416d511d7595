"""The fleet's LLM rate limit: one token bucket in Redis (`take_token.lua`) shared by every
worker process and container, so together they stay under the provider's limit.

A call that finds no token is never waited for in a worker slot: the attempt ends as `Throttled`
and the task waits in the schedule (no retry spent) until about when a token is due, spread over
one interval so that a crowd of throttled tasks does not come back at the same instant. The
bucket also listens to the provider (`adapt_rate.lua`): a 429 halves its pace, successes bring
it back step by step.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from core.settings import Settings
from core.store import TaskStore
from worker.providers import CallRecord, Throttled

BUCKET = "llm"
FLOOR = 0.1  # the pace never falls under a tenth of the configured rate
STEP = 0.02  # each success gives back 2% of the configured rate: 25 successes undo one halving


class FleetRateLimit:
    """LLM_RATE_LIMIT_REQUESTS calls per LLM_RATE_LIMIT_INTERVAL seconds for the whole fleet
    (0 requests: no limit, nothing is asked of Redis)."""

    def __init__(
        self, store: TaskStore, settings: Settings, enabled: bool = True, rng: Callable[[], float] = random.random
    ) -> None:
        self._store = store
        self._rng = rng
        self.requests = settings.llm_rate_limit_requests
        self.interval = settings.llm_rate_limit_interval
        self.enabled = enabled and self.requests > 0

    def wait(self) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is due (none is taken)."""
        if not self.enabled:
            return 0.0
        return self._store.take_token(BUCKET, self.requests / self.interval, self.requests)

    def throttled(self, wait: float) -> Throttled:
        """The error that sends a task without a token to the schedule, due `wait` plus a share of
        one interval later."""
        delay = wait + self._rng() * self.interval
        message = f"fleet rate limit ({self.requests} calls per {self.interval:g}s): next token in {wait:.2f}s"
        return Throttled(message, retry_after=delay)

    def observe(self, record: CallRecord) -> None:
        """Pace the bucket by the provider's answer: a 429 slows it down, a success speeds it up."""
        if not self.enabled:
            return
        if record.error_type == "rate_limited":
            self._store.adapt_rate(BUCKET, True, FLOOR, STEP)
        elif not record.error_type:
            self._store.adapt_rate(BUCKET, False, FLOOR, STEP)


class AttemptTokens:
    """The tokens of one attempt's calls. The runner takes the first before it asks the breaker
    (a throttled attempt must not count as a call the breaker saw succeed); the calls after it
    (more chunks, fallback models) take theirs as they go, through `take`."""

    def __init__(self, limit: FleetRateLimit) -> None:
        self._limit = limit
        self._banked = 0

    def first(self) -> Throttled | None:
        """Take the first call's token now; the error to settle the attempt with if there is none."""
        wait = self._limit.wait()
        if wait > 0:
            return self._limit.throttled(wait)
        self._banked = 1
        return None

    def take(self) -> None:
        """Before each call: use the banked token, else take one; raises `Throttled` if none."""
        if self._banked:
            self._banked -= 1
            return
        wait = self._limit.wait()
        if wait > 0:
            raise self._limit.throttled(wait)
