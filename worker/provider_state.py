"""What the workers learn about the LLM provider, kept in Redis for the API: per-day call
metrics, the last error and success, and the pause that a refused key or spent credits (401,
402) put on every LLM call.

The pause is the shared breaker held open for PROVIDER_PAUSE_SECONDS: consumers stop taking work
exactly as for any open breaker (tasks wait in the queue and spend no retry), `/health` reports
it, an operator's reset of the breaker ends it, and after it one probe call tests the provider.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import CircuitOpen
from core.keys import Keys
from worker.breaker import SharedBreaker
from worker.providers import CallRecord
from worker.ratelimit import FleetRateLimit

METRICS_DAYS = 90  # per-day metrics are kept this long


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


def day_of(epoch_seconds: float) -> str:
    """The UTC day (YYYY-MM-DD) that per-day metrics file a moment under."""
    return time.strftime("%Y-%m-%d", time.gmtime(epoch_seconds))


class ProviderRecorder:
    """Writes what each LLM call did (one MULTI of blind writes per call; no read-then-write)."""

    def __init__(self, client: Any, keys: Keys, limit: FleetRateLimit | None = None) -> None:
        self._r = client
        self._keys = keys
        self._limit = limit

    def record(self, call: CallRecord) -> None:
        """Count the call in today's metrics, note it as the last error or success, and let the
        fleet's rate limit hear about a 429 or a success."""
        now = time.time()
        daily = self._keys.llm_daily(day_of(now))
        pipe = self._r.pipeline(transaction=True)
        pipe.hincrby(daily, "calls", 1)
        pipe.hincrby(daily, f"model:{call.model}", 1)
        if call.error_type:
            pipe.hincrby(daily, "errors", 1)
            pipe.hincrby(daily, f"error:{call.error_type}", 1)
            state = {"last_error": call.message[:500], "last_error_type": call.error_type}
            pipe.hset(self._keys.llm_state, mapping={**state, "last_error_model": call.model,
                                                     "last_error_at": int(now * 1000)})  # fmt: skip
        else:
            pipe.hincrby(daily, "ok", 1)
            for name, count in (call.usage or {}).items():
                if name in ("prompt_tokens", "completion_tokens", "total_tokens"):
                    pipe.hincrby(daily, name, count)
            pipe.hset(self._keys.llm_state, mapping={"last_success_at": int(now * 1000), "last_model": call.model})
        pipe.expire(daily, METRICS_DAYS * 86400)
        pipe.execute()
        if self._limit is not None:
            self._limit.observe(call)

    def paused(self, seconds: float, reason: str) -> None:
        """Note why and until when LLM calls are paused, for `/health` and the provider status."""
        until = int((time.time() + seconds) * 1000)
        self._r.hset(self._keys.llm_state, mapping={"paused_until": until, "pause_reason": reason[:500]})
