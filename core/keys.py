"""Every Redis key name of the application, and nowhere else.

Names keep the design's spelling so operators can read them with `redis-cli`; an optional
prefix (REDIS_KEY_PREFIX, empty by default) namespaces a deployment. On a Redis Cluster every
name also carries one hash tag (`{atf}` after the prefix), so that all the keys one transition
script touches live in one slot, as a cluster requires of a script.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from core.states import State

if TYPE_CHECKING:
    from core.settings import Settings

# Appended to a task's key: its audit trail lives beside its hash, so `redis-cli` shows them together.
HISTORY_SUFFIX = ":history"
# Appended to a task's key: the finished pieces of a long input (summaries, translations), so a retry
# redoes only the chunk that failed. Deleted with the task, like the history.
CHUNKS_SUFFIX = ":chunks"

# The two sides of pending work: new tasks, and retries that are due.
SIDES = ("primary", "retry")
PRIORITIES = range(10)  # 0 runs first
DEFAULT_PRIORITY = 5


def level_of(raw: str | int | None) -> int:
    """A task's priority as stored (a task of before priorities has none), as its level: the
    same rule as _lib.lua level_of, for the lists a step names must be those its script checks."""
    try:
        level = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_PRIORITY
    return int(level) if 0 <= level <= 9 else DEFAULT_PRIORITY


# A state whose index is one of the design's own structures rather than `tasks:state:{STATE}`.
_STATE_INDEX_OVERRIDES = {State.SCHEDULED: "tasks:scheduled", State.DLQ: "dlq:tasks"}
# The hash tag of every key on a Redis Cluster (REDIS_CLUSTER_NODES).
CLUSTER_TAG = "atf"


@dataclass(frozen=True)
class Keys:
    """Builds key names under one prefix, and on a cluster under one hash tag (`tag`)."""

    prefix: str = ""
    tag: str = ""

    def _k(self, name: str) -> str:
        return f"{self.prefix}{{{self.tag}}}{name}" if self.tag else f"{self.prefix}{name}"

    def task(self, task_id: str) -> str:
        """Hash holding one task (state, content, result, attempts, timestamps)."""
        return self._k(f"task:{task_id}")

    def history(self, task_id: str) -> str:
        """Capped list of one task's state changes and errors, oldest first (its audit trail)."""
        return self.task(task_id) + HISTORY_SUFFIX

    def task_chunks(self, task_id: str) -> str:
        """Hash of one task's finished pieces of a long input (field per piece), with a TTL; deleted with the task."""
        return self.task(task_id) + CHUNKS_SUFFIX

    def pending(self, side: str, priority: int, owner: str) -> str:
        """List of one owner's PENDING ids at one priority on one side (SIDES: `primary` for new
        work, `retry` for due retries), FIFO (push right, pop left)."""
        return f"{self.pending_prefix}{side}:{priority}:{owner}"

    @property
    def pending_prefix(self) -> str:
        """`pending(side, priority, owner)` minus `side:priority:owner`: what every pending list's
        name starts with (a scan for them in a check or a test)."""
        return self._k("tasks:pending:")

    def ready(self, side: str) -> str:
        """Sorted set of the owners whose turn may come on one side: member `<priority><owner>`,
        score `priority * LEVEL_SPAN + turn`, so the lowest score is the most urgent level's
        owner whose turn is oldest (strict priority, then round-robin). An owner is in it, per
        level, exactly while it has PENDING work there and is not held (`owners_held`)."""
        return self._k(f"tasks:ready:{side}")

    @property
    def turns(self) -> str:
        """Counter: the turn number an owner takes when it (re)joins the end of its level's round."""
        return self._k("tasks:ready:turn")

    @property
    def depth(self) -> str:
        """Hash of PENDING ids per side (`primary`, `retry`) and per side and level
        (`primary:0` … `retry:9`), moved in the same steps as the lists."""
        return self._k("tasks:depth")

    @property
    def wake(self) -> str:
        """List of wake-up marks (bounded): every step that adds PENDING work pushes one, and an
        idle consumer blocks on it (BLPOP) instead of polling."""
        return self._k("tasks:wake")

    @property
    def legacy_primary(self) -> str:
        """The one FIFO list of new work before priorities (issue 18): its ids are adopted into
        the per-owner lists by the scheduler (`adopt_legacy`), as priority 5 of their owner."""
        return self._k("tasks:pending:primary")

    @property
    def legacy_retry(self) -> str:
        """As `legacy_primary`, for the due retries."""
        return self._k("tasks:pending:retry")

    @property
    def owners_backlog(self) -> str:
        """Sorted set: PENDING ids per owner (API key id; "" without keys), for the top owners."""
        return self._k("owners:backlog")

    @property
    def owners_active(self) -> str:
        """Hash: ACTIVE tasks per owner, fleet-wide (for the per-key concurrency cap)."""
        return self._k("owners:active")

    @property
    def owners_held(self) -> str:
        """Sorted set of the owners whose work waits on a limit, score = when to look again (ms;
        +inf: until one of their running tasks ends). A held owner is in no `ready` set."""
        return self._k("owners:held")

    @property
    def owners_held_turns(self) -> str:
        """Hash: a held owner's turns out of the `ready` sets (`<side>:<level>` entries, space
        separated), given back when its hold ends, so that no step looks into its lists."""
        return self._k("owners:held:turns")

    @property
    def owner_limits(self) -> str:
        """Hash of the per-key limits the claim enforces (`<owner>:concurrency`,
        `<owner>:daily_tokens`; owner `*`: the default of each), written from API_KEY_LIMITS."""
        return self._k("owners:limits")

    @property
    def owner_tokens(self) -> str:
        """Hash: tokens used per owner per UTC day, field `<day>:<owner>` (`day`: days since the
        epoch, by the server's clock). One static key, so every script that counts or checks a
        budget declares it; the days before yesterday are deleted by `TaskStore.prune_token_days`."""
        return self._k("owners:tokens")

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

    def type_tasks(self, task_type: str) -> str:
        """Sorted set of the ids of one task type's tasks, score = creation time (ms): a listing by
        type reads its pages from here, never by a scan. Kept by create, delete and purge."""
        return self._k(f"tasks:type:{task_type}")

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
        dead, …): moved by `count_type()` in the same scripts and steps as the global counters."""
        return self._k("stats:by-type")

    @property
    def durations(self) -> str:
        """Hash: histogram of completed attempts' run time (one field per bucket, plus sum and count).
        `:v2` since the buckets became fine (issue 21): the coarse one's fields meant other ranges."""
        return self._k("stats:durations:v2")

    @property
    def completions_tally(self) -> str:
        """List: one line per completed attempt not yet added into the figures it moves (its
        tokens in `counters`, its run time in `durations`, both throughput rings, its type's
        `completed`): complete_task appends one line instead of seven increments, and
        `fold_tally` adds them up, run by the scheduler and by every reader of those figures
        before it reads, so a figure read is never short of a completion."""
        return self._k("stats:tally")

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
        """Celery queue (in the broker's own database) that only one container's worker consumes.
        No hash tag: the broker is never the cluster."""
        return f"{self.prefix}atf.dispatch.{worker_id}"

    @property
    def all_patterns(self) -> list[str]:
        """Glob patterns that cover every key this application writes (for operator tools)."""
        patterns = ("task:*", "tasks:*", "dlq:*", "worker:*", "workers:*", "breaker:*", "stats:*", "scheduler:*")
        return [self._k(p) for p in (*patterns, "owners:*", "idempotency:*", "ratelimit:*", "llm:*")]


def shard_tags(count: int, cluster: bool) -> list[str]:
    """Each shard's hash tag. One shard: none, or the cluster's one tag. Several: the i-th tag is
    the first `atf<i>-<n>` whose slot falls in the i-th of `count` equal slot ranges, so a cluster
    whose masters split the slots evenly (as `redis-cli --cluster create` does) gets one shard
    per master, and the tags never change for a given count."""
    if count == 1:
        return [CLUSTER_TAG] if cluster else [""]
    tags = []
    for shard in range(count):
        low, high = shard * REDIS_CLUSTER_HASH_SLOTS // count, (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // count
        candidates = (f"{CLUSTER_TAG}{shard}-{n}" for n in itertools.count())
        tags.append(next(tag for tag in candidates if low <= key_slot(tag.encode()) < high))
    return tags


def shard_keys(settings: Settings) -> list[Keys]:
    """Each shard's key names, shard 0 (the control shard) first."""
    tags = shard_tags(settings.redis_shards, bool(settings.cluster_addresses))
    return [Keys(settings.redis_key_prefix, tag) for tag in tags]


def deployment_keys(settings: Settings) -> Keys:
    """The key names of the deployment's control shard (its only one by default; see
    core/shards.py): REDIS_KEY_PREFIX, and the hash tag on a cluster or with shards."""
    return shard_keys(settings)[0]
