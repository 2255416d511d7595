"""The shared circuit breaker as operators drive it: read its state, reset (close) it, open it.

It is the workers' own `SharedBreaker` over the same Redis keys, so a reset here is seen by every
worker at once. pybreaker is synchronous (and imports nothing but the standard library and
redis), so the routes call these methods in a thread.
"""

from __future__ import annotations

from core.breaker import SharedBreaker


class BreakerControl(SharedBreaker):
    """The operator's side of the shared breaker."""

    def status(self) -> dict[str, object]:
        """State, consecutive failures counted, and seconds until a probe while open."""
        breaker = self._breaker()
        state = str(breaker.current_state)
        left = round(self.seconds_left(), 3) if state == "open" else 0.0
        return {"state": state, "fail_counter": int(breaker.fail_counter), "seconds_left": left}

    def open(self) -> None:
        """Operator stop: every consumer stops taking work until the breaker is reset (or, after
        CIRCUIT_BREAKER_RESET_TIMEOUT, a probe call succeeds)."""
        self._breaker().open()
