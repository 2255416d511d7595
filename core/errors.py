"""The application's error tree. Library errors are translated into these where they enter."""

from __future__ import annotations

from redis.exceptions import ClusterError, MasterDownError, ReadOnlyError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemory
from redis.exceptions import TimeoutError as RedisTimeoutError

# The Redis client's errors the processes catch, named here: no module outside core/ imports the
# client itself.
__all__ = ["ClusterError", "RedisClusterException", "RedisConnectionError", "RedisError", "RedisOutOfMemory",
           "RedisTimeoutError"]  # fmt: skip


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


class ClusterUnavailable(RedisConnectionError):
    """A Redis Cluster could not serve a command: a slot's master failed and no replica took over
    yet (CLUSTERDOWN), or the client found no node serving the slot; core/redis.py's cluster
    clients raise this for redis-py's cluster errors, some of which are no RedisError at all."""


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
    """429 (or 503 with Retry-After): the provider asks us to slow down. Consecutive ones of a task
    wait longer and longer (Retry-After, when sent, is only a floor); none spends a retry."""

    error_type = "rate_limited"
    from_provider = True  # False for the fleet's own limit: its wait is the bucket's, it never grows


class LLMInputRejected(LLMError):
    """The provider refuses this content; retrying cannot help."""

    error_type = "input_rejected"
    # Counted by INPUT_REJECTED_GUARD: the same refusal of many different tasks in a row is more
    # likely the configuration's fault than every input's.
    guarded = True


class LLMInvalidOutput(LLMInputRejected):
    """The model's answers never took the form the task asked for (extract: a JSON object valid
    against the task's schema), though each was shown its error: FAILED, with that error. Not
    guarded: it says nothing against the provider's configuration."""

    error_type = "invalid_output"
    guarded = False


class LLMContentFlagged(LLMInputRejected):
    """A moderation or content filter flagged this input. Its message is the same for every
    flagged input, so it never counts towards INPUT_REJECTED_GUARD."""

    guarded = False


class LLMProviderProblem(LLMError):
    """Unknown model, forbidden, wrong base URL: an operator must act, so no retry storm (DLQ)."""

    error_type = "provider_problem"


class LLMModelUnknown(LLMProviderProblem):
    """The server does not know the model (whatever status it used to say so): the fallback
    models are asked before the task goes to the DLQ."""


class ProviderRequired(LLMProviderProblem):
    """The task's type has no offline answer and no LLM provider is configured. The API refuses
    such a submit (422 `provider_required`); a task that reaches a worker without a provider anyway
    goes to the DLQ, to be re-driven once a key is set."""


class UnknownTaskType(LLMProviderProblem):
    """No type of the task's name is loaded in this worker (TASK_TYPE_MODULES differs from the
    API's): the DLQ, to be re-driven once the worker loads it."""


class LLMAccountProblem(LLMProviderProblem):
    """The key is refused or the credits are spent (401, 402, `insufficient_quota`, a proxy's
    auth error). Every call would fail alike, so the worker pauses all LLM calls instead of
    sending task after task to the DLQ."""

    error_type = "provider_paused"


class LLMContextTooLong(LLMInputRejected):
    """The input (with the answer's tokens) exceeds the model's context (`context_length_exceeded`)."""


class CircuitOpen(LLMError):
    """The shared breaker refused the call; the task waits without spending a retry."""

    error_type = "circuit_open"


# The one vocabulary of error classes: the task's `error_type`, its history entries, the provider
# status's `last_error_type`, the per-day metrics' `errors_by_class` all use these names.
ERROR_TYPES = (
    "transient",  # retried with backoff, one retry spent
    "rate_limited",  # the provider's 429: rescheduled with a growing wait, no retry spent
    "throttled",  # the fleet's own rate limit: rescheduled without a call
    "input_rejected",  # FAILED: the provider refuses this content
    "invalid_output",  # FAILED: the answers never had the form asked for (extract's schema)
    "provider_problem",  # DLQ: unknown model, forbidden, wrong base URL
    "provider_paused",  # back to the queue, every call paused: key refused, credits spent
    "circuit_open",  # back to the queue: the shared breaker is open
    "internal",  # a bug of ours (not an LLMError)
    # ... and the queue's own, for attempts that never reached the provider's answer:
    "worker_lost",  # the reaper took the task back (a dead consumer, an expired lease)
    "dispatch_failed",  # the consumer could not hand the attempt to its worker
    "shutdown",  # the consumer gave the attempt back while stopping
)
