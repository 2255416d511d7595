"""Every Redis key name of the application, and nowhere else.

Names keep the design's spelling so operators can read them with `redis-cli`; an optional
prefix (REDIS_KEY_PREFIX, empty by default) namespaces a deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.states import State

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

    @property
    def all_tasks(self) -> str:
        """Sorted set of every stored task id, score = creation time (ms)."""
        return self._k("tasks:all")

    def inflight(self, consumer_id: str) -> str:
        """List of the ids one consumer has taken and not yet seen finished."""
        return self._k(f"tasks:inflight:{consumer_id}")

    @property
    def consumers(self) -> str:
        """Set of consumer ids that may own an in-flight list (the reaper walks it)."""
        return self._k("workers:registry")

    def heartbeat(self, consumer_id: str) -> str:
        """JSON string with a TTL: a consumer/worker pair is alive while this exists."""
        return self._k(f"worker:heartbeat:{consumer_id}")

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
        return [self._k(p) for p in ("task:*", "tasks:*", "dlq:*", "worker:*", "workers:*", "breaker:*")]
