"""What the workers learn about the LLM provider, kept in Redis (core/provider_state.py) for the
API: per-day call metrics, the last error and success, and the pause that a refused key or spent
credits (401, 402) put on every LLM call.

The pause is the shared breaker held open for PROVIDER_PAUSE_SECONDS: consumers stop taking work
exactly as for any open breaker (tasks wait in the queue and spend no retry), `/health` reports
it, an operator's reset of the breaker ends it, and after it one probe call tests the provider.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from core.breaker import SharedBreaker
from core.errors import CircuitOpen, RedisError
from core.provider_state import ProviderState, day_of
from worker.providers import CallRecord
from worker.ratelimit import FleetRateLimit

FLUSH_SECONDS = 1.0  # how often the collected call metrics are written
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")

log = logging.getLogger("asynctaskflow.worker")
T = TypeVar("T")


class ProviderPaused(CircuitOpen):
    """The provider refused the key or the credits are spent: LLM calls are paused for everyone,
    and the task goes back to the queue without spending a retry."""

    error_type = "provider_paused"


class PausableBreaker(SharedBreaker):
    """The shared breaker, plus a long opening for problems that waiting a minute cannot cure."""

    def pause(self, seconds: float) -> None:
        """Open the breaker until `seconds` from now. pybreaker lets a probe through once
        `opened_at + reset_timeout` has passed, so `opened_at` is set that far ahead."""
        breaker = self._breaker()
        breaker.open()
        ahead = max(0.0, seconds - self.reset_timeout)
        breaker._state_storage.opened_at = datetime.now(UTC) + timedelta(seconds=ahead)

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """As SharedBreaker.call; a refusal during a pause says `provider_paused`, not
        `circuit_open`, so that a task a consumer took in the instant before it saw the pause
        keeps the pause's name (one vocabulary: task, status and metrics agree)."""
        try:
            return super().call(func, *args)
        except ProviderPaused:
            raise
        except CircuitOpen as e:
            if not self.in_pause():
                raise
            raise ProviderPaused(f"LLM calls paused: {e}", retry_after=e.retry_after) from e

    def in_pause(self) -> bool:
        """A pause pushes the opening time into the future; an ordinary opening is in the past."""
        opened_at = self._breaker()._state_storage.opened_at
        return opened_at is not None and opened_at > datetime.now(UTC)


class ProviderRecorder:
    """Collects what each LLM call did and writes it at most once a second, in one MULTI of
    blind increments and field writes. Writing per call cost a round trip and about 8 % of the
    worker's CPU per task (bench/RESULTS.md); these are metrics, a second late is fine, and a
    worker that dies loses at most its last second of them (never anything of a task)."""

    def __init__(self, state: ProviderState, limit: FleetRateLimit | None = None) -> None:
        self._provider = state
        self._limit = limit
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()  # (day, field) → calls
        self._state: dict[str, str | int] = {}  # the last error's and last success's fields
        self._timer: threading.Timer | None = None

    def record(self, call: CallRecord) -> None:
        """Count the call in today's metrics, note it as the last error or success, and let the
        fleet's rate limit hear about a 429 or a success (at once: it paces the next calls)."""
        now = time.time()
        day = day_of(now)
        counts = Counter({"calls": 1, f"model:{call.model}": 1})
        state: dict[str, str | int]
        if call.error_type:
            counts.update(["errors", f"error:{call.error_type}"])
            state = {"last_error": call.message[:500], "last_error_type": call.error_type,
                     "last_error_model": call.model, "last_error_at": int(now * 1000)}  # fmt: skip
            if call.error_type == "rate_limited":  # for /health's "degraded: rate limited"
                state["last_rate_limited_at"] = int(now * 1000)
        else:
            counts.update({"ok": 1, **{n: c for n, c in (call.usage or {}).items() if n in TOKEN_FIELDS}})
            state = {"last_success_at": int(now * 1000), "last_model": call.model}
        self._collect({(day, field): count for field, count in counts.items()}, state)
        if self._limit is not None:
            self._limit.observe(call)

    def record_local(self, call: CallRecord) -> None:
        """A local provider's answer (the offline provider: no network, so no per-day call
        metrics and no rate limit): only noted as the last success, which the provider status
        shows (without it the dashboard said "none yet" after any number of offline successes)."""
        if not call.error_type:
            self._collect({}, {"last_success_at": int(time.time() * 1000), "last_model": call.model})

    def _collect(self, counts: dict[tuple[str, str], int], state: dict[str, str | int]) -> None:
        """Add to what the next flush writes, and make sure one is due within FLUSH_SECONDS."""
        with self._lock:
            self._counts.update(counts)
            self._state.update(state)
            if self._timer is None:
                self._timer = threading.Timer(FLUSH_SECONDS, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write what was collected (the timer's job; also at worker shutdown). If Redis is away
        the figures are kept for the next flush."""
        with self._lock:
            counts, state = self._counts, self._state
            self._counts, self._state, self._timer = Counter(), {}, None
        if not counts and not state:
            return
        try:
            self._provider.record(counts, state)
        except RedisError as e:
            log.warning("LLM call metrics not written yet (%s); kept for the next flush", e)
            with self._lock:
                self._counts.update(counts)
                self._state = {**state, **self._state}

    def paused(self, seconds: float, reason: str) -> None:
        """Note why and until when LLM calls are paused, for `/health` and the provider status."""
        self._provider.note_pause(int((time.time() + seconds) * 1000), reason)
