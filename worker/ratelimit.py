"""The fleet's LLM rate limit: one token bucket in Redis (`take_token.lua`) shared by every
worker process and container, so together they stay under the provider's limit.

A call that finds no token is never waited for in a worker slot: the attempt ends as `Throttled`
and the task waits in the schedule (no retry spent) until about when a token is due, spread over
one interval so that a crowd of throttled tasks does not come back at the same instant. The
bucket also listens to the provider (`adapt_rate.lua`): a 429 halves its pace, successes bring
it back step by step; without a configured limit, the first 429 creates it from the observed
call rate.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from core.provider_state import BUCKET
from core.settings import Settings
from core.store import TaskStore
from worker.providers import CallRecord, Throttled

FLOOR = 0.1  # the pace never falls under a tenth of the configured (or observed) rate
STEP = 0.02  # each success gives back 2% of the configured rate: 25 successes undo one halving
WINDOW = 10.0  # seconds of this process's calls that the observed rate is measured over
CHECK_SECONDS = 1.0  # how stale this process's view of an adaptive bucket may be


class FleetRateLimit:
    """LLM_RATE_LIMIT_REQUESTS calls per LLM_RATE_LIMIT_INTERVAL seconds for the whole fleet.

    With 0 requests there is no limit until the provider answers 429: then the bucket becomes
    adaptive, its rate the call rate this process observed over the last WINDOW seconds, halved
    per 429 and given back per success (adapt_rate.lua). Until then nothing is asked of Redis
    per call: whether a bucket exists is read at most once per CHECK_SECONDS."""

    def __init__(
        self, store: TaskStore, settings: Settings, enabled: bool = True, rng: Callable[[], float] = random.random
    ) -> None:
        self._store = store
        self._rng = rng
        self.requests = settings.llm_rate_limit_requests
        self.interval = settings.llm_rate_limit_interval
        self.enabled = enabled and self.requests > 0
        self.adaptive = enabled and self.requests == 0
        self._lock = threading.Lock()
        self._calls: deque[float] = deque()  # monotonic times of this process's calls in WINDOW
        self._paced: float | None = None  # the adaptive bucket's base rate as last read
        self._checked = -math.inf

    def wait(self) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is due (none is taken)."""
        if self.enabled:
            return self._store.take_token(BUCKET, self.requests / self.interval, self.requests)
        rate = self._adaptive_rate()
        return 0.0 if rate is None else self._store.take_token(BUCKET, rate, 1)

    def throttled(self, wait: float) -> Throttled:
        """The error that sends a task without a token to the schedule, due `wait` plus a share of
        one interval (of one token's wait, when adaptive) later."""
        spread = self.interval if self.enabled else wait
        delay = wait + self._rng() * spread
        if self.enabled:
            message = f"fleet rate limit ({self.requests} calls per {self.interval:g}s): next token in {wait:.2f}s"
        else:
            message = f"fleet paced after the provider's 429s: next token in {wait:.2f}s"
        return Throttled(message, retry_after=delay)

    def observe(self, record: CallRecord) -> None:
        """Pace the bucket by the provider's answer: a 429 slows it down, a success speeds it up."""
        if self.adaptive:
            self._note_call()
        limited = record.error_type == "rate_limited"
        if self.enabled and (limited or not record.error_type):
            self._store.adapt_rate(BUCKET, limited, FLOOR, STEP)
        elif self.adaptive and limited:
            self._store.adapt_rate(BUCKET, True, FLOOR, STEP, self.observed_rate())
            self._checked = -math.inf  # this process paces from its next call on
        elif self.adaptive and not record.error_type and self._paced is not None:
            self._store.adapt_rate(BUCKET, False, FLOOR, STEP)

    def observed_rate(self) -> float:
        """This process's calls per second over the last WINDOW seconds (at least one call)."""
        with self._lock:
            self._forget_old(time.monotonic())
            return max(len(self._calls), 1) / WINDOW

    def _note_call(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._calls.append(now)
            self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        while self._calls and self._calls[0] < now - WINDOW:
            self._calls.popleft()

    def _adaptive_rate(self) -> float | None:
        """The adaptive bucket's base rate, read again when the last reading is CHECK_SECONDS old."""
        if not self.adaptive:
            return None
        now = time.monotonic()
        if now - self._checked < CHECK_SECONDS:
            return self._paced
        rate = self._store.paced_rate(BUCKET)
        self._paced, self._checked = rate, now
        return rate


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
