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
class RetryPolicy:
    """Backoff parameters, in seconds."""

    max_retries: int
    backoff_base: float
    backoff_max: float
    retry_after_max: float

    def backoff(self, retry_count: int, jitter: float) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, so retries spread out."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(retry_count, 60))
        return ceiling / 2 + ceiling / 2 * jitter

    def decide(self, error: BaseException, retry_count: int, jitter: float) -> tuple[Outcome, float]:
        """(outcome, delay in seconds) for an attempt that raised `error`; `jitter` is uniform in [0, 1)."""
        if isinstance(error, LLMInputRejected):
            return Outcome.FAIL, 0.0
        if isinstance(error, LLMProviderProblem):
            return Outcome.DEAD, 0.0
        if isinstance(error, CircuitOpen):
            return Outcome.DEFER, max(error.retry_after or 0.0, 0.0)
        if isinstance(error, LLMRateLimited):
            # Throttling says nothing against the task: waiting costs no retry, so a rate-limit
            # storm delays work but never sends it to the DLQ.
            wait = self.backoff(retry_count, jitter) if error.retry_after is None else max(error.retry_after, 0.0)
            return Outcome.WAIT, min(wait, self.retry_after_max)
        if retry_count >= self.max_retries:
            return Outcome.DEAD, 0.0
        return Outcome.RETRY, self.backoff(retry_count, jitter)


def retry_share(base: float, floor: float, retry_backlog: int, pressure_threshold: int) -> float:
    """Probability that a consumer prefers the retry list.

    Up to `pressure_threshold` waiting retries it is `base`; beyond, it falls in proportion to the
    backlog, never below `floor`, so a retry storm cannot starve new work. It recovers as the
    backlog drains because it is recomputed from the current length.
    """
    if retry_backlog <= pressure_threshold:
        return base
    return max(floor, base * pressure_threshold / retry_backlog)
