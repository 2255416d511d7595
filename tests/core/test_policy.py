"""The pure retry policy: every error class, the backoff curve, and the consumer's retry share."""

from __future__ import annotations

import pytest

from core.errors import (
    CircuitOpen,
    LLMError,
    LLMInputRejected,
    LLMProviderProblem,
    LLMRateLimited,
    LLMTransient,
)
from core.policy import Outcome, RateLimitStreak, RetryPolicy, retry_share

POLICY = RetryPolicy(max_retries=3, backoff_base=2.0, backoff_max=60.0, retry_after_max=120.0)


def ceiling(retry_count: int) -> float:
    return min(POLICY.backoff_max, POLICY.backoff_base * 2.0**retry_count)


@pytest.mark.parametrize("retry_count", [0, 3, 10])
def test_rejected_input_fails_at_once(retry_count: int) -> None:
    assert POLICY.decide(LLMInputRejected("unsafe content"), retry_count, 0.5) == (Outcome.FAIL, 0.0)


@pytest.mark.parametrize("retry_count", [0, 3])
def test_provider_problem_goes_to_the_dlq_without_a_retry_storm(retry_count: int) -> None:
    assert POLICY.decide(LLMProviderProblem("invalid api key"), retry_count, 0.5) == (Outcome.DEAD, 0.0)


@pytest.mark.parametrize("retry_count", [0, 3, 7])
def test_open_circuit_defers_for_its_retry_after_without_spending_a_retry(retry_count: int) -> None:
    """Deferral costs no retry, so it applies even to a task that has no retries left."""
    assert POLICY.decide(CircuitOpen("breaker open", retry_after=42.0), retry_count, 0.5) == (Outcome.DEFER, 42.0)
    assert POLICY.decide(CircuitOpen("breaker open"), retry_count, 0.5) == (Outcome.DEFER, 0.0)


@pytest.mark.parametrize("retry_count", [0, 2, 3, 9])
def test_rate_limit_waits_at_least_what_the_provider_asks_without_spending_a_retry(retry_count: int) -> None:
    """Even a task with no retries left waits: throttling is not the task's failure. Retry-After
    is a floor under the rate-limit backoff (30 s for a first 429, less up to a quarter)."""
    assert POLICY.decide(LLMRateLimited("429", retry_after=70.0), retry_count, 0.9) == (Outcome.WAIT, 70.0)
    assert POLICY.decide(LLMRateLimited("429", retry_after=0.0), retry_count, 0.0) == (Outcome.WAIT, 30.0)
    assert POLICY.decide(LLMRateLimited("429", retry_after=1.0), retry_count, 1.0) == (Outcome.WAIT, 22.5)


def test_rate_limit_retry_after_is_capped() -> None:
    assert POLICY.decide(LLMRateLimited("429", retry_after=86_400.0), 1, 0.0) == (Outcome.WAIT, 120.0)


def test_rate_limit_without_retry_after_backs_off_by_the_run_of_429s_not_the_retry_count() -> None:
    assert POLICY.decide(LLMRateLimited("429"), 3, 0.0) == (Outcome.WAIT, 30.0)
    assert POLICY.decide(LLMRateLimited("429"), 0, 0.0, RateLimitStreak(2, 90.0)) == (Outcome.WAIT, 120.0)


@pytest.mark.parametrize("error", [LLMTransient("timeout"), LLMError("odd"), RuntimeError("boom"), Exception()])
@pytest.mark.parametrize("retry_count", [0, 1, 2])
@pytest.mark.parametrize("jitter", [0.0, 0.37, 0.999999])
def test_transient_errors_retry_with_jittered_backoff(error: BaseException, retry_count: int, jitter: float) -> None:
    outcome, delay = POLICY.decide(error, retry_count, jitter)
    assert outcome is Outcome.RETRY
    assert ceiling(retry_count) / 2 <= delay <= ceiling(retry_count)


@pytest.mark.parametrize(
    "error", [LLMTransient("timeout"), LLMError("odd"), ValueError()]
)
@pytest.mark.parametrize("retry_count", [3, 4])
def test_out_of_retries_goes_to_the_dlq(error: BaseException, retry_count: int) -> None:
    assert POLICY.decide(error, retry_count, 0.5) == (Outcome.DEAD, 0.0)


def test_no_retries_allowed_means_dead_at_the_first_failure() -> None:
    policy = RetryPolicy(max_retries=0, backoff_base=1.0, backoff_max=10.0, retry_after_max=10.0)
    assert policy.decide(LLMTransient("timeout"), 0, 0.5) == (Outcome.DEAD, 0.0)


def test_backoff_doubles_then_is_capped() -> None:
    ceilings = [POLICY.backoff(n, 1.0) for n in range(10)]
    assert ceilings == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    floors = [POLICY.backoff(n, 0.0) for n in range(10)]
    assert floors == [c / 2 for c in ceilings]


def test_backoff_grows_with_jitter_inside_equal_halves() -> None:
    for n in range(8):
        values = [POLICY.backoff(n, j / 10) for j in range(10)]
        assert values == sorted(values)
        assert ceiling(n) / 2 <= values[0] and values[-1] <= ceiling(n)


# --- retry share -------------------------------------------------------------------------------------
BASE, FLOOR, THRESHOLD = 0.3, 0.1, 100


@pytest.mark.parametrize("backlog", [0, 1, 50, THRESHOLD])
def test_retry_share_is_the_base_below_the_threshold(backlog: int) -> None:
    assert retry_share(BASE, FLOOR, backlog, THRESHOLD) == BASE


@pytest.mark.parametrize("backlog", [THRESHOLD + 1, 2 * THRESHOLD, 10 * THRESHOLD, 10**6])
def test_retry_share_falls_under_pressure_but_not_below_the_floor(backlog: int) -> None:
    share = retry_share(BASE, FLOOR, backlog, THRESHOLD)
    assert FLOOR <= share < BASE


def test_retry_share_reaches_the_floor_in_a_retry_storm() -> None:
    assert retry_share(BASE, FLOOR, 10**6, THRESHOLD) == FLOOR
    assert retry_share(BASE, FLOOR, 2 * THRESHOLD, THRESHOLD) == pytest.approx(BASE / 2)


def test_retry_share_never_rises_as_the_backlog_grows() -> None:
    shares = [retry_share(BASE, FLOOR, backlog, THRESHOLD) for backlog in range(0, 5_000, 7)]
    assert all(a >= b for a, b in zip(shares, shares[1:], strict=False))
    assert shares[0] == BASE and shares[-1] == FLOOR


def test_the_fleets_throttle_waits_for_its_token_without_spending_a_retry() -> None:
    from worker.providers import Throttled

    assert POLICY.decide(Throttled("no token", retry_after=4.5), 3, 0.5) == (Outcome.WAIT, 4.5)
    assert POLICY.decide(Throttled("no token", retry_after=1e6), 0, 0.5) == (Outcome.WAIT, POLICY.retry_after_max)


def test_a_paused_provider_defers_like_an_open_breaker() -> None:
    from worker.provider_state import ProviderPaused
    from worker.providers import LLMAccountProblem

    assert POLICY.decide(ProviderPaused("paused", retry_after=300.0), 7, 0.5) == (Outcome.DEFER, 300.0)
    # Unpaused (the runner converts it first), a refused key alone would be an operator's problem.
    assert POLICY.decide(LLMAccountProblem("HTTP 401"), 0, 0.5) == (Outcome.DEAD, 0.0)
