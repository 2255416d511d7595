"""Pure retry policy: what a failed attempt leads to, and when. No I/O here, so it is tested exhaustively."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.errors import CircuitOpen, LLMInputRejected, LLMProviderProblem, LLMRateLimited


class Outcome(StrEnum):
    """What the worker does with a failed attempt."""

    RETRY = "RETRY"  # SCHEDULED, retry_count + 1
    DEFER = "DEFER"  # back to the queue, retry_count unchanged (the breaker refused the call)
    WAIT = "WAIT"  # SCHEDULED, retry_count unchanged (the provider asked us to slow down)
    FAIL = "FAIL"  # FAILED: the input itself was rejected
    DEAD = "DEAD"  # DLQ: out of retries, or an operator must fix the provider


@dataclass(frozen=True)
class RateLimitStreak:
    """A task's provider 429s in a row: how many came before this attempt, and seconds since the
    first of them (0, 0.0 when the last attempt was not rate limited)."""

    count: int = 0
    waited: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff parameters, in seconds."""

    max_retries: int
    backoff_base: float
    backoff_max: float
    retry_after_max: float
    rate_limit_base: float = 30.0
    rate_limit_max: float = 900.0
    rate_limit_jitter: float = 0.25
    rate_limit_max_wait: float = 7200.0

    def backoff(self, retry_count: int, jitter: float) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, so retries spread out."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(retry_count, 60))
        return ceiling / 2 + ceiling / 2 * jitter

    def rate_limit_wait(self, streak: int, retry_after: float | None, jitter: float) -> float:
        """The wait after a task's `streak`+1-th provider 429 in a row: `rate_limit_base`·2^streak
        (at most `rate_limit_max`) less up to `rate_limit_jitter` of it at random. A Retry-After
        (capped by `retry_after_max`) is a floor, never a ceiling: a provider that says "1 s" to
        every caller would otherwise get every task back within the second, for ever."""
        ceiling = min(self.rate_limit_max, self.rate_limit_base * 2.0 ** min(streak, 60))
        wait = ceiling * (1.0 - self.rate_limit_jitter * jitter)
        floor = min(max(retry_after or 0.0, 0.0), self.retry_after_max)
        return max(wait, floor)

    def decide(
        self, error: BaseException, retry_count: int, jitter: float, streak: RateLimitStreak | None = None
    ) -> tuple[Outcome, float]:
        """(outcome, delay in seconds) for an attempt that raised `error`; `jitter` is uniform in
        [0, 1); `streak` is the task's provider 429s in a row before this attempt."""
        if isinstance(error, LLMRateLimited):
            return self._rate_limited(error, streak or RateLimitStreak(), jitter)
        if isinstance(error, LLMInputRejected):
            return Outcome.FAIL, 0.0
        if isinstance(error, LLMProviderProblem):
            return Outcome.DEAD, 0.0
        if isinstance(error, CircuitOpen):
            return Outcome.DEFER, max(error.retry_after or 0.0, 0.0)
        if retry_count >= self.max_retries:
            return Outcome.DEAD, 0.0
        return Outcome.RETRY, self.backoff(retry_count, jitter)

    def _rate_limited(self, error: LLMRateLimited, streak: RateLimitStreak, jitter: float) -> tuple[Outcome, float]:
        """Throttling says nothing against the task: waiting costs no retry. The fleet's own limit
        waits what its bucket says; a provider's 429 waits longer each time in a row, and after
        RATE_LIMIT_MAX_WAIT of them the task goes to the DLQ (a limit that never lifts)."""
        if not error.from_provider:
            return Outcome.WAIT, min(max(error.retry_after or 0.0, 0.0), self.retry_after_max)
        if streak.count and streak.waited >= self.rate_limit_max_wait:
            return Outcome.DEAD, 0.0
        return Outcome.WAIT, self.rate_limit_wait(streak.count, error.retry_after, jitter)


def retry_share(base: float, floor: float, retry_backlog: int, pressure_threshold: int) -> float:
    """Probability that a consumer prefers the retry list.

    Up to `pressure_threshold` waiting retries it is `base`; beyond, it falls in proportion to the
    backlog, never below `floor`, so a retry storm cannot starve new work. It recovers as the
    backlog drains because it is recomputed from the current length.
    """
    if retry_backlog <= pressure_threshold:
        return base
    return max(floor, base * pressure_threshold / retry_backlog)
