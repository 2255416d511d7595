"""The application's error tree. Library errors are translated into these where they enter."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, ReadOnlyError


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


# --- Redis failover: "unavailable for a moment", never a failure -----------------------------
# Subclasses of redis-py's ConnectionError, so that every client treats them as it treats a
# dropped connection (drop it, reconnect, retry), the API answers 503, and kombu reconnects
# the Celery worker instead of stopping it with "Unrecoverable error". core/redis.py registers
# the first three for the error codes Redis sends.
class ReplicaNotMaster(ReadOnlyError, RedisConnectionError):
    """READONLY: this server was demoted to a replica (a failover, or a managed endpoint that
    moved); reconnect, to find the master again."""


class NotEnoughReplicas(RedisConnectionError):
    """NOREPLICAS: the master has fewer healthy replicas than `min-replicas-to-write` (a deposed
    master, or one whose replicas are resyncing), so it refuses writes; nothing was written."""


class MasterLinkDown(MasterDownError, RedisConnectionError):
    """MASTERDOWN: a replica that lost its master refuses to serve stale data."""


class NotReplicated(RedisConnectionError):
    """A write was not acknowledged by REDIS_MIN_REPLICAS_ACK replicas in time, or a failover had
    begun when it landed: it may not survive the failover, so it is not reported as done."""


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
