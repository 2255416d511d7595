"""The application's error tree. Library errors are translated into these where they enter."""

from __future__ import annotations


class AsyncTaskFlowError(Exception):
    """Base of every error this application raises on purpose."""


# --- data model -----------------------------------------------------------------------------
class TaskNotFound(AsyncTaskFlowError):
    """No task hash under that id (never created, deleted, or expired)."""


class InvalidTransition(AsyncTaskFlowError):
    """The task is not in a state this transition accepts."""

    def __init__(self, task_id: str, state: str, action: str) -> None:
        super().__init__(f"task {task_id} is {state}; cannot {action}")
        self.task_id, self.state, self.action = task_id, state, action


class StaleAttempt(AsyncTaskFlowError):
    """A worker reported for an attempt that is no longer current; its result is refused."""


# --- LLM provider ---------------------------------------------------------------------------
class LLMError(AsyncTaskFlowError):
    """A failed LLM call; the subclass says what the retry policy should do with it."""

    error_type = "llm_error"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds the provider (or the breaker) asks us to wait


class LLMTransient(LLMError):
    """Timeouts, connection errors, 5xx: worth retrying with backoff."""

    error_type = "transient"


class LLMRateLimited(LLMError):
    """429 (or 503 with Retry-After): retry no sooner than the provider asks."""

    error_type = "rate_limited"


class LLMInputRejected(LLMError):
    """The provider refuses this content; retrying cannot help."""

    error_type = "input_rejected"


class LLMProviderProblem(LLMError):
    """Bad key, no credits, unknown model: an operator must act, so no retry storm."""

    error_type = "provider_problem"


class CircuitOpen(LLMError):
    """The shared breaker refused the call; the task waits without spending a retry."""

    error_type = "circuit_open"
