"""Every Redis key name of the application, and nowhere else.

Names keep the design's spelling so operators can read them with `redis-cli`; an optional
prefix (REDIS_KEY_PREFIX, empty by default) namespaces a deployment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from core.states import State

# Appended to a task's key: its audit trail lives beside its hash, so `redis-cli` shows them together.
# Scripts that learn an id mid-script build the trail's key as `task_prefix .. id .. HISTORY_SUFFIX`.
HISTORY_SUFFIX = ":history"
# Appended to a task's key: the finished pieces of a long input (summaries, translations), so a retry
# redoes only the chunk that failed. Deleted with the task, like the history.
CHUNKS_SUFFIX = ":chunks"

# A state whose index is one of the design's own structures rather than `tasks:state:{STATE}`.
_STATE_INDEX_OVERRIDES = {State.SCHEDULED: "tasks:scheduled", State.DLQ: "dlq:tasks"}


@dataclass(frozen=True)
class Keys:
    """Builds key names under one prefix."""

    prefix: str = ""

    def _k(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def task(self, task_id: str) -> str:
        """Hash holding one task (state, content, result, attempts, timestamps)."""
        return self._k(f"task:{task_id}")

    @property
    def task_prefix(self) -> str:
        """`task(id)` minus the id: scripts that learn an id mid-script (a pop) build its key from this."""
        return self.task("")

    def history(self, task_id: str) -> str:
        """Capped list of one task's state changes and errors, oldest first (its audit trail)."""
        return self.task(task_id) + HISTORY_SUFFIX

    def task_chunks(self, task_id: str) -> str:
        """Hash of one task's finished pieces of a long input (field per piece), with a TTL; deleted with the task."""
        return self.task(task_id) + CHUNKS_SUFFIX

    @property
    def pending_primary(self) -> str:
        """List of new task ids, FIFO (RPUSH, pop left)."""
        return self._k("tasks:pending:primary")

    @property
    def pending_retry(self) -> str:
        """List of retries that are due, FIFO."""
        return self._k("tasks:pending:retry")

    @property
    def scheduled(self) -> str:
        """Sorted set of retries waiting, score = due time (ms); also the SCHEDULED index."""
        return self.state_index(State.SCHEDULED)

    @property
    def dlq(self) -> str:
        """Sorted set of dead tasks, score = time of death (ms); also the DLQ index."""
        return self.state_index(State.DLQ)

    def state_index(self, state: State) -> str:
        """Sorted set of the ids in one state, score = time the task entered it (ms)."""
        return self._k(_STATE_INDEX_OVERRIDES.get(state, f"tasks:state:{state.value}"))

    def owner_tasks(self, owner: str) -> str:
        """Sorted set of the ids of one API key's tasks, score = creation time (ms): a submit-scope
        key lists its own tasks from here, never by a scan. Kept by create, delete and purge."""
        return self._k(f"tasks:owner:{owner}")

    @property
    def owner_prefix(self) -> str:
        """`owner_tasks(owner)` minus the owner: scripts that learn a task's owner from its hash
        (delete, purge) build the index's key from this."""
        return self.owner_tasks("")

    def type_tasks(self, task_type: str) -> str:
        """Sorted set of the ids of one task type's tasks, score = creation time (ms): a listing by
        type reads its pages from here, never by a scan. Kept by create, delete and purge."""
        return self._k(f"tasks:type:{task_type}")

    @property
    def type_prefix(self) -> str:
        """`type_tasks(type)` minus the type: scripts that learn a task's type from its hash
        (delete, purge) build the index's key from this."""
        return self.type_tasks("")

    @property
    def all_tasks(self) -> str:
        """Sorted set of every stored task id, score = creation time (ms)."""
        return self._k("tasks:all")

    def inflight(self, consumer_id: str) -> str:
        """List of the ids one consumer has taken and not yet seen finished."""
        return self._k(f"tasks:inflight:{consumer_id}")

    @property
    def inflight_prefix(self) -> str:
        """`inflight(consumer)` minus the consumer: a script that learns the owner mid-script
        (cancelling an ACTIVE task) builds the list's key from this."""
        return self.inflight("")

    @property
    def consumers(self) -> str:
        """Set of consumer ids that may own an in-flight list (the reaper walks it)."""
        return self._k("workers:registry")

    def heartbeat(self, consumer_id: str) -> str:
        """JSON string with a TTL: a consumer/worker pair is alive while this exists."""
        return self._k(f"worker:heartbeat:{consumer_id}")

    def worker_beat(self, worker_id: str) -> str:
        """String with a TTL: the boot id of container `worker_id`'s Celery worker, refreshed while
        it runs; its consumer pauses while it is missing and hands its tasks back when it goes
        away or changes (the worker died, or was replaced)."""
        return self._k(f"worker:celery:{worker_id}")

    def consumer_stats(self, consumer_id: str) -> str:
        """Hash of one consumer's settled attempts (processed, completed, failed), with a TTL
        refreshed on each report, so the counts of stopped consumers go away by themselves."""
        return self._k(f"worker:stats:{consumer_id}")

    @property
    def scheduler_heartbeat(self) -> str:
        """JSON string with a TTL, written by whichever scheduler ran last: a scheduler is alive."""
        return self._k("scheduler:heartbeat")

    @property
    def counters(self) -> str:
        """Hash of global counters (submitted, completed, failed, dead, retried, …), changed only
        inside the transition scripts, in the same step as the state they count."""
        return self._k("stats:counters")

    @property
    def type_counters(self) -> str:
        """Hash of per-type counters, one field `<type>:<counter>` (submitted, completed, failed,
        dead, …): moved by `changed()` in the same scripts and steps as the global counters."""
        return self._k("stats:by-type")

    @property
    def durations(self) -> str:
        """Hash: histogram of completed attempts' run time (one field per bucket, plus sum and count).
        `:v2` since the buckets became fine (issue 21): the coarse one's fields meant other ranges."""
        return self._k("stats:durations:v2")

    @property
    def throughput_seconds(self) -> str:
        """Hash: ring of per-second buckets of finished tasks (the last minute)."""
        return self._k("stats:throughput:second")

    @property
    def throughput_minutes(self) -> str:
        """Hash: ring of per-minute buckets of finished tasks (the last hour)."""
        return self._k("stats:throughput:minute")

    def idempotency(self, key: str) -> str:
        """String with a TTL: the task ids a submit with this `Idempotency-Key` created. The
        client's key is hashed, so any header value makes a short, safe key name."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._k(f"idempotency:{digest}")

    def rate_bucket(self, name: str) -> str:
        """Hash: a token bucket shared by every process (`take_token`), e.g. the fleet's LLM calls."""
        return self._k(f"ratelimit:{name}")

    @property
    def llm_state(self) -> str:
        """Hash: the LLM provider as the workers last saw it (last error, last success, pause)."""
        return self._k("llm:state")

    @property
    def llm_rejections(self) -> str:
        """Hash (message, with a TTL): the message of the current run of input_rejected attempts,
        for INPUT_REJECTED_GUARD."""
        return self._k("llm:rejections")

    @property
    def llm_rejected_ids(self) -> str:
        """Set with a TTL: the ids of the tasks in that run (each task counts once)."""
        return self._k("llm:rejections:ids")

    @property
    def llm_status_cache(self) -> str:
        """String (JSON) with a short TTL: the provider's account status, so the API asks it rarely."""
        return self._k("llm:status")

    def llm_daily(self, day: str) -> str:
        """Hash with a TTL: one UTC day's LLM calls, errors by class and tokens (`day` is YYYY-MM-DD)."""
        return self._k(f"stats:llm:{day}")

    @property
    def events(self) -> str:
        """Pub/sub channel: one JSON message per state change, for live UIs."""
        return self._k("queue-updates")

    @property
    def breaker_namespace(self) -> str:
        """Namespace under which pybreaker keeps the shared circuit breaker's keys."""
        return self._k("breaker:llm")

    def dispatch_queue(self, worker_id: str) -> str:
        """Celery queue (in the broker's own database) that only one container's worker consumes."""
        return self._k(f"atf.dispatch.{worker_id}")

    @property
    def all_patterns(self) -> list[str]:
        """Glob patterns that cover every key this application writes (for operator tools)."""
        patterns = ("task:*", "tasks:*", "dlq:*", "worker:*", "workers:*", "breaker:*", "stats:*", "scheduler:*")
        return [self._k(p) for p in (*patterns, "idempotency:*", "ratelimit:*", "llm:*")]
