"""The task store: one method per transition script, plus the reads that need no script.

`Ops` builds each script call (which keys, in which order, which arguments) once; `TaskStore`
(sync: consumer, worker, scheduler) and `AsyncTaskStore` (the API) only execute those calls and
turn refusals into errors with `check`. Nothing here reads a hash into Python to edit it.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoPermissionError, NoScriptError, RedisError

from core.errors import InvalidTransition, NotReplicated, StaleAttempt, TaskNotFound
from core.keys import DEFAULT_PRIORITY, PRIORITIES, SIDES, Keys, level_of
from core.lua import function_name, library, sha, source
from core.provider_state import AsyncProviderState, ProviderState
from core.redis import Durability, learned
from core.states import ACTIONS, State
from core.task import Task

Reply = list[Any]


@dataclass(frozen=True)
class Call:
    """One script invocation."""

    script: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True)
class Claim:
    """What `claim_task` did: `status` is ok | skip | empty; `source` says which side the id came
    from: primary | retry | again (this very claim, sent twice, took it the first time)."""

    status: str
    task_id: str
    source: str = ""
    fields: dict[str, str] | None = None  # with 'ok': the task's DISPATCH_FIELDS


@dataclass(frozen=True)
class Place:
    """Where a task's own keys are, as its hash names them: its owner's lists at its level, its
    owner's and its type's index, its consumer's in-flight list. A step that must name every key
    it touches (KEYS) reads this first; its script checks it again and replies 'moved' when the
    hash says otherwise (the consumer changes with a claim; the rest never changes)."""

    owner: str = ""
    level: int = DEFAULT_PRIORITY
    consumer: str = ""
    task_type: str = ""


PLACE_FIELDS = ("owner", "priority", "consumer", "task_type")


def _place_reads(pipe: Any, keys: Keys, task_ids: list[str]) -> None:
    """Each task's Place, read in one pipeline (sync or asyncio)."""
    for task_id in task_ids:
        pipe.hmget(keys.task(task_id), PLACE_FIELDS)


def place_of(values: list[str | None]) -> Place:
    owner, priority, consumer, task_type = values
    return Place(owner or "", level_of(priority), consumer or "", task_type or "")


# How often a claim is sent again after 'moved' before it reports nothing to take: many consumers
# racing for the same few heads may each lose a few times; the consumer then waits for a wake-up
# mark, which is there, since work is.
CLAIM_TRIES = 20

# How often a step is sent again after its script replied 'moved' (the task was claimed between
# the read of its place and the step): a race that needs a claim each time, so a bound is enough.
MOVED_TRIES = 5


@dataclass(frozen=True)
class Created:
    """What a submit did: the ids of its tasks, and whether an earlier submit with the same
    idempotency key had created them (`replayed`; then `created_at` is 0)."""

    ids: list[str]
    created_at: int
    replayed: bool = False


@dataclass(frozen=True)
class Durations:
    """The run-time histogram of completed attempts: `counts[i]` attempts took at most
    `DURATION_BUCKETS_MS[i]` ms (and more than the bound before), `overflow` took longer."""

    counts: list[int]
    overflow: int
    sum_ms: int
    count: int


@dataclass(frozen=True)
class OwnerUsage:
    """An owner's limits (None: no limit) and use: `day` is days since the epoch (UTC);
    `held_until` is when a held owner's work is looked at again (epoch ms; inf: when one of its
    running tasks ends; None: not held)."""

    owner: str
    day: int
    concurrency: int | None
    daily_tokens: int | None
    active: int
    backlog: int
    tokens_today: int
    held_until: float | None


@dataclass(frozen=True)
class Page:
    """One page of a task listing; `cursor` is None on the last page. `scores` are the ids'
    scores in the index read and `tag` the cursor's tag of that index (what a listing over several
    shards merges by, and goes on from)."""

    ids: list[str]
    cursor: str | None
    scores: list[float] = dataclasses.field(default_factory=list)
    tag: str = ""


def page_of(rows: list[tuple[str, float]], cursor: str | None, tag: str) -> Page:
    return Page([m for m, _ in rows], cursor, [score for _, score in rows], tag)


def cursor_after(task_id: str, score: float, tag: str) -> str:
    """A listing's cursor after the entry (`task_id`, `score`) of the index `tag` names."""
    return _cursor_of((task_id, score), tag)


# What a claim returns of the task, for the consumer to hand to the worker with the dispatch: all
# an attempt reads of it, so the worker starts without a round trip to load the task. claim_task
# reads them before its writes: of the fields it writes, only started_at may be here.
DISPATCH_FIELDS = ("task_type", "content", "params", "retry_count", "max_retries", "started_at")


def claimed_task(task_id: str, token: str, consumer_id: str, fields: dict[str, str]) -> Task:
    """The task as its attempt sees it, from the DISPATCH_FIELDS its claim returned: ACTIVE
    under `token`; the fields an attempt does not read keep their defaults."""
    raw = {**fields, "id": task_id, "state": State.ACTIVE.value, "attempt": token, "consumer": consumer_id}
    return Task.from_hash(raw)


# Upper bounds (ms) of the run-time histogram's buckets; scripts/_lib.lua duration_bucket() computes
# the same ones (a test compares them for every ms). Every millisecond up to 10 ms, then steps of at most
# 10 %, up to 5 minutes: a quantile interpolated inside its bucket is then within 10 % of the
# true one whatever the latencies (the true value lies in the same bucket). Buckets of 0-100 ms
# put a 23 ms median at 51 ms (issue 21).
DURATION_BUCKETS_MS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 24, 26, 28, 30, 33,
    36, 39, 42, 46, 50, 55, 60, 65, 70, 77, 84, 92, 100, 110, 120, 130, 140, 150, 160, 170, 180,
    190, 200, 220, 240, 260, 280, 300, 330, 360, 390, 420, 460, 500, 550, 600, 650, 700, 770, 840,
    920, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000, 2200, 2400, 2600, 2800,
    3000, 3300, 3600, 3900, 4200, 4600, 5000, 5500, 6000, 6500, 7000, 7700, 8400, 9200, 10000,
    11000, 12000, 13000, 14000, 15000, 16000, 17000, 18000, 19000, 20000, 22000, 24000, 26000,
    28000, 30000, 33000, 36000, 39000, 42000, 46000, 50000, 55000, 60000, 65000, 70000, 77000,
    84000, 92000, 100000, 110000, 120000, 130000, 140000, 150000, 160000, 170000, 180000, 190000,
    200000, 220000, 240000, 260000, 280000, 300000
)

# How long a consumer's counts (`worker:stats:*`) outlive its last heartbeat; _lib.lua
# CONSUMER_STATS_TTL is the same (a test compares them).
CONSUMER_STATS_TTL_SECONDS = 86_400

# Tally lines (completed attempts) fold_tally.lua adds up per call: a few ms of Redis at most, so
# a large tally (no scheduler for a while) is folded over several calls, never in one long one.
FOLD_BATCH = 2000
# The figures fold_tally.lua can read after it folds, in the order of its KEYS from 2.
FOLD_READS = ("counters", "durations", "seconds", "minutes", "types")

# Entries a listing with several filters checks at most per page (see AsyncTaskStore.page): the
# work of one request stays bounded whatever the data; a page that finds too few is short and its
# cursor goes on.
FILTER_SCAN_MAX = 2000
# The tags a listing's cursor may end with: which of two indexes it pages (AsyncTaskStore._source).
CURSOR_SOURCES = ("state", "type")

# The queues `queue_ids` can page through: the pending sides (per-owner lists, in turn order) and
# sorted sets (by score).
LIST_QUEUES = ("primary", "retry")
ZSET_QUEUES = ("scheduled", "dlq")


def new_token() -> str:
    """An attempt token: names one dispatch, so a late duplicate cannot write over newer state."""
    return secrets.token_hex(8)


def check(reply: Reply, task_id: str, action: str) -> Reply:
    """Map a script's refusal code to the error tree; return the reply when it went through."""
    code = reply[0]
    if code == "not_found":
        raise TaskNotFound(task_id)
    if code == "wrong_state":
        raise InvalidTransition(task_id, reply[1], action)
    if code == "stale":
        raise StaleAttempt(f"task {task_id}: attempt no longer current (task is {reply[1] or 'gone'})")
    return reply


class Ops:
    """Builds every script call; the key order here matches each script's header."""

    def __init__(self, keys: Keys) -> None:
        self.k = keys
        self._states = [s.value for s in State]
        self._indexes = [keys.state_index(s) for s in State]
        # The pending-work keys, in the order _lib.lua queues() reads them.
        self._q = [*(keys.ready(side) for side in SIDES), keys.turns, keys.depth, keys.owners_backlog]
        self._q += [keys.owners_active, keys.owners_held, keys.owner_limits, keys.wake, keys.owner_tokens,
                    keys.owners_held_turns]  # fmt: skip

    def create(self, tasks: list[Task], idempotency_key: str = "", retention_ms: int = 0) -> Call:
        k = self.k
        keys = [k.state_index(State.PENDING), k.all_tasks, k.events, k.counters]
        keys.append(k.idempotency(idempotency_key))
        # One submit has one owner; an owner-less task (the API without keys) is in no owner index.
        owner = tasks[0].owner if tasks else ""
        if any(t.owner != owner for t in tasks):
            raise ValueError("tasks created in one step must share their owner")
        keys += [k.owner_tasks(owner), k.type_counters, *self._q]
        args = [retention_ms, "1" if idempotency_key else ""]
        for task in tasks:
            keys += [k.task(task.id), k.type_tasks(task.task_type)]
            keys.append(k.pending("primary", level_of(task.priority), task.owner))
            args += _create_fields(task)
        return Call("create_task", keys, args)

    def claim(self, consumer_id: str, token: str, prefer_retry: bool, look: str = "", task_id: str = "") -> Call:
        """`look`: the turn a previous claim's reply said is due ('<side> <level><owner>'; '' none);
        `task_id`: the head of that turn's list as read ('' none). Without them the list and the
        hash named are the in-flight list, which the script then leaves alone."""
        k = self.k
        inflight = k.inflight(consumer_id)
        keys = [inflight, k.state_index(State.PENDING), k.state_index(State.ACTIVE), k.events]
        keys += [k.counters, k.consumer_stats(consumer_id), *self._q]
        keys += [self.looked_list(look) or inflight, k.task(task_id) if task_id else inflight]
        side = "retry" if prefer_retry else "primary"
        return Call("claim_task", keys, [token, consumer_id, side, look, task_id, *DISPATCH_FIELDS])

    def looked_list(self, look: str) -> str:
        """The list of a turn a claim's reply named ('<side> <level><owner>'), or '' for none."""
        if not look:
            return ""
        side, member = look.split(" ", 1)
        return self.k.pending(side, int(member[0]), member[1:])

    def _lists(self, place: Place) -> list[str]:
        """The task's two lists (its owner's at its level, each side), as _lib.lua lists_at()."""
        return [self.k.pending(side, place.level, place.owner) for side in SIDES]

    def _report_keys(self, task_id: str, consumer_id: str, target: str) -> list[str]:
        k = self.k
        keys = [k.task(task_id), k.inflight(consumer_id), k.state_index(State.ACTIVE), target, k.events]
        return [*keys, k.history(task_id), k.counters, k.consumer_stats(consumer_id)]

    def complete(
        self, task_id: str, consumer_id: str, token: str, result: str, provider: str, model: str = "",
        usage: dict[str, int] | None = None,
    ) -> Call:  # fmt: skip
        k = self.k
        keys = [k.task(task_id), k.inflight(consumer_id), k.state_index(State.ACTIVE), k.state_index(State.COMPLETED)]
        keys += [k.events, k.counters, k.consumer_stats(consumer_id), k.completions_tally]
        prompt, completion, total = usage_figures(usage)
        args = [task_id, token, result, provider, model, prompt, completion, total, consumer_id]
        return Call("complete_task", [*keys, *self._q], args)

    def fold_tally(self, reads: tuple[str, ...] = (), with_time: bool = False) -> Call:
        """The fold, then the hashes `reads` names (FOLD_READS) read in the same step."""
        k = self.k
        keys = [k.completions_tally, k.counters, k.durations, k.throughput_seconds, k.throughput_minutes,
                k.type_counters]  # fmt: skip
        args = [FOLD_BATCH, "1" if with_time else "", *(FOLD_READS.index(name) + 2 for name in reads)]
        return Call("fold_tally", keys, args)

    def schedule_retry(
        self, task_id: str, consumer_id: str, token: str, delay_ms: int, error: str, error_type: str, spend: bool,
        streak: str = "reset",
    ) -> Call:  # fmt: skip
        keys = [*self._report_keys(task_id, consumer_id, self.k.scheduled), self.k.type_counters, *self._q]
        args = [task_id, token, delay_ms, error, error_type, consumer_id, int(spend), streak]
        return Call("schedule_retry", keys, args)

    def fail(self, task_id: str, consumer_id: str, token: str, target: State, error: str, error_type: str) -> Call:
        keys = self._report_keys(task_id, consumer_id, self.k.state_index(target))
        keys += [self.k.throughput_seconds, self.k.throughput_minutes, self.k.type_counters, *self._q]
        args = [task_id, token, target.value, error, error_type, consumer_id]
        return Call("fail_task", keys, args)

    def release(self, task_id: str, consumer_id: str, token: str, reason: str, error_type: str, place: Place) -> Call:
        k = self.k
        keys = [k.task(task_id), k.inflight(consumer_id), k.state_index(State.ACTIVE), k.state_index(State.PENDING)]
        keys += [k.events, k.history(task_id), k.counters, *self._q, *self._lists(place)]
        args = [task_id, token, reason, error_type, consumer_id, place.owner, place.level]
        return Call("release_task", keys, args)

    def set_progress(self, task_id: str, token: str, progress: int, step: str) -> Call:
        return Call("set_progress", [self.k.task(task_id), self.k.events], [task_id, token, progress, step])

    def promote_due(self, due: list[tuple[str, Place]]) -> Call:
        keys = [self.k.scheduled, self.k.state_index(State.PENDING), self.k.events, self.k.counters, *self._q]
        return self._per_task("promote_due", keys, [], due)

    def _per_task(self, script: str, keys: list[str], args: list[Any], tasks: list[tuple[str, Place]]) -> Call:
        """A batch step over tasks read before: per task its hash, history and retry list in
        KEYS, and its id, owner and level in ARGV (promote_due, requeue_dead)."""
        for task_id, place in tasks:
            keys += [self.k.task(task_id), self.k.history(task_id), self.k.pending("retry", place.level, place.owner)]
            args += [task_id, place.owner, place.level]
        return Call(script, keys, args)

    def adopt_legacy(self, primary: list[tuple[str, Place]], retry: list[tuple[str, Place]]) -> Call:
        keys = [self.k.legacy_primary, self.k.legacy_retry, *self._q]
        args: list[Any] = [len(primary)]
        for side, tasks in zip(SIDES, (primary, retry), strict=True):
            for task_id, place in tasks:
                keys += [self.k.task(task_id), self.k.pending(side, place.level, place.owner)]
                args += [task_id, place.owner, place.level]
        return Call("adopt_legacy", keys, args)

    def set_limits(self, limits: dict[str, int]) -> Call:
        args = [item for field, value in sorted(limits.items()) for item in (field, value)]
        return Call("set_limits", self._q, args)

    def recover(self, task_id: str, consumer_id: str, token: str, reason: str, place: Place) -> Call:
        k = self.k
        keys = [k.task(task_id), k.inflight(consumer_id), k.state_index(State.ACTIVE)]
        keys += [k.state_index(State.PENDING), k.dlq, k.events, k.history(task_id), k.counters]
        keys += [k.consumer_stats(consumer_id), k.throughput_seconds, k.throughput_minutes, k.type_counters, *self._q]
        args = [task_id, token, reason, consumer_id, place.owner, place.level]
        return Call("recover_task", [*keys, *self._lists(place)], args)

    def retry(self, task_id: str, place: Place) -> Call:
        keys = [self.k.task(task_id), self.k.events, self.k.history(task_id), self.k.counters, *self._q]
        args = [task_id, _names(ACTIONS["retry"]), place.owner, place.level, *self._states]
        return Call("retry_task", [*keys, *self._lists(place), *self._indexes], args)

    def cancel(self, task_id: str, place: Place) -> Call:
        k = self.k
        keys = [k.task(task_id), k.scheduled, k.state_index(State.PENDING), k.state_index(State.CANCELLED)]
        keys += [k.events, k.state_index(State.ACTIVE), k.history(task_id), k.counters, *self._q]
        keys += [*self._lists(place), k.inflight(place.consumer)]
        args = [task_id, place.consumer, _names(ACTIONS["cancel"]), place.owner, place.level]
        return Call("cancel_task", keys, args)

    def delete(self, task_id: str, place: Place) -> Call:
        k = self.k
        keys = [k.task(task_id), k.all_tasks, k.events, k.history(task_id), k.counters, k.task_chunks(task_id)]
        keys += [*self._q, *self._lists(place), k.owner_tasks(place.owner), k.type_tasks(place.task_type)]
        args = [task_id, place.owner, place.task_type, _names(ACTIONS["delete"]), place.level]
        return Call("delete_task", [*keys, *self._indexes], [*args, *self._states])

    def purge(self, state: State, retention_ms: int, max_keep: int | None, targets: list[PurgeTarget]) -> Call:
        k = self.k
        keys = [k.state_index(state), k.all_tasks, k.counters]
        args: list[Any] = [retention_ms, "" if max_keep is None else max_keep]
        for task_id, owner, task_type in targets:
            keys += [k.task(task_id), k.history(task_id), k.task_chunks(task_id)]
            keys += [k.owner_tasks(owner), k.type_tasks(task_type)]
            args += [task_id, owner, task_type]
        return Call("purge_finished", keys, args)

    def take_token(self, bucket: str, rate: float, burst: float, cost: float) -> Call:
        return Call("take_token", [self.k.rate_bucket(bucket)], [rate, burst, cost])

    def adapt_rate(
        self, bucket: str, limited: bool, floor: float, step: float, ttl_ms: int, observed: float = 0.0
    ) -> Call:
        args = ["limited" if limited else "ok", floor, step, ttl_ms, observed]
        return Call("adapt_rate", [self.k.rate_bucket(bucket)], args)

    def note_rejection(self, task_id: str, message: str, ttl_ms: int) -> Call:
        keys = [self.k.llm_rejections, self.k.llm_rejected_ids]
        return Call("note_rejection", keys, [task_id, message, ttl_ms])

    def save_chunk(self, task_id: str, token: str, field: str, value: str, ttl_ms: int) -> Call:
        return Call("save_chunk", [self.k.task(task_id), self.k.task_chunks(task_id)], [token, field, value, ttl_ms])

    def requeue_dead(self, dead: list[tuple[str, Place]]) -> Call:
        keys = [self.k.dlq, self.k.state_index(State.PENDING), self.k.events, self.k.counters, *self._q]
        return self._per_task("requeue_dead", keys, [], dead)


# The fields create_task reads of each task, first and in this order (see its ARGV).
_CREATE_FIRST = ("id", "owner", "priority", "task_type")


def _refuses_functions(error: RedisError, text: str) -> bool:
    """Whether `error` (its text lowercased) says functions are not to be had here: Redis 6 knows
    neither FCALL nor FUNCTION; an ACL may refuse either; redis-py's cluster client refuses a
    command its servers' command table lacks before sending it. Calls under way at the same time
    each meet it once."""
    if isinstance(error, NoPermissionError):
        return "'fcall'" in text or "'function|" in text
    return text.startswith(("unknown command `fcall`", "unknown command `function`")) or (
        "command doesn't exist in redis commands" in text and text.startswith(("fcall", "function"))
    )


def _create_fields(task: Task) -> list[str]:
    """One task's part of create_task's ARGV: the number of values, then its hash fields as
    name, value pairs (`Task.new_hash`), those of _CREATE_FIRST first; the timestamps are the script's."""
    stored = task.new_hash()
    names = [*_CREATE_FIRST, *(n for n in stored if n not in _CREATE_FIRST and n not in ("created_at", "updated_at"))]
    values = [item for name in names for item in (name, stored[name])]
    return [str(len(values)), *values]


# A purge candidate as read before purge_finished.lua runs: (id, owner, task type), '' for none.
PurgeTarget = tuple[str, str, str]


def _candidate_reads(pipe: Any, keys: Keys, state: State, batch: int) -> None:
    """What purge_finished.lua needs to know before it runs (every key it touches is named in
    its call, so the ids are read first): the oldest `batch` entries of the index, and its size."""
    pipe.zrange(keys.state_index(state), 0, batch - 1, withscores=True)
    pipe.zcard(keys.state_index(state))


def purge_candidates(now: tuple[int, int], replies: list[Any], retention_ms: int, max_keep: int | None) -> list[str]:
    """The ids a purge goes for, from the server's time (TIME: a cluster pipeline refuses a
    keyless command, so it is read apart) and `_candidate_reads`' replies: those past retention,
    or else the oldest beyond `max_keep`. The script checks each again when it runs."""
    (seconds, micros), (rows, size) = now, replies
    if retention_ms > 0:
        cutoff = seconds * 1000 + micros // 1000 - retention_ms
        if due := [task_id for task_id, score in rows if score <= cutoff]:
            return due
    excess = 0 if max_keep is None else size - max_keep
    return [task_id for task_id, _ in rows[: max(0, excess)]]


def _owner_reads(pipe: Any, keys: Keys, task_ids: list[str]) -> None:
    """Each candidate's owner and type: the keys of its indexes."""
    for task_id in task_ids:
        pipe.hmget(keys.task(task_id), ["owner", "task_type"])


def purge_targets(task_ids: list[str], found: list[list[str | None]]) -> list[PurgeTarget]:
    """`_owner_reads`' replies as the script's ARGV: a field the hash lacks (or no hash) is ''."""
    pairs = zip(task_ids, found, strict=True)
    return [(task_id, owner or "", task_type or "") for task_id, (owner, task_type) in pairs]


def token_day(field: str) -> int:
    """The day (since the epoch) of a field of `owner_tokens` (`<day>:<owner>`); a field of any
    other shape is of no day, and never deleted as old."""
    day = field.partition(":")[0]
    return int(day) if day.isdigit() else 1 << 62


def _cursor_of(row: tuple[str, float], tag: str) -> str:
    """A listing's cursor after `row` (id, score): "score:id", plus ":tag" when it names its index."""
    return f"{int(row[1])}:{row[0]}" + (f":{tag}" if tag else "")


def _cursor_tag(cursor: str | None) -> str:
    """The index a listing's cursor names ("" for an untagged cursor, or none)."""
    parts = (cursor or "").split(":")
    return parts[2] if len(parts) == 3 and parts[2] in CURSOR_SOURCES else ""


def _names(states: frozenset[State]) -> str:
    """A set of states as a guard script reads it (comma-separated)."""
    return ",".join(sorted(states))


def token_wait(reply: Reply) -> float:
    """`take_token`'s reply as seconds to wait (0.0: granted)."""
    return 0.0 if reply[0] == "ok" else int(reply[1]) / 1000


def usage_figures(usage: dict[str, int] | None) -> tuple[int, int, int]:
    """(prompt, completion, total) tokens from a provider's OpenAI-style `usage`; zeros when absent."""
    if not usage:
        return 0, 0, 0
    prompt, completion = max(0, int(usage.get("prompt_tokens") or 0)), max(0, int(usage.get("completion_tokens") or 0))
    return prompt, completion, max(0, int(usage.get("total_tokens") or prompt + completion))


class _Store:
    """What both stores share: the client, the keys, the calls and the replies' meaning.
    With a `durability` that asks for replicas, the writes that must survive a failover (a
    submit; an attempt's outcome) are confirmed before they count (REDIS_MIN_REPLICAS_ACK)."""

    def __init__(self, client: Any, keys: Keys, durability: Durability | None = None) -> None:
        self.r = client
        self.keys = keys
        self.ops = Ops(keys)
        # FCALL of the function library (core/lua.py) until the server says it has no functions
        # (Redis < 7, or an ACL refusing them): EVALSHA from then on.
        self._functions = True
        # Per consumer and draw (prefer_retry), the turn its next claim looks at (TaskStore.claim).
        self._looks: dict[str, dict[bool, str]] = {}
        # Per consumer, the last claim sent (its token, turn and head): the same claim sent again
        # after a lost reply must name the same task, whose hash tells it was taken already.
        self._sent: dict[str, tuple[str, str, str]] = {}
        self.durability = durability if durability is not None and durability.replicas else None

    def _retry_after(self, error: RedisError) -> str | None:
        """How to send `call` again after `error`, or None when the error is the answer: 'load' the
        library first (a server that lacks it: a new or flushed one, restarted without its data),
        'eval' (this server has no functions: from now on, EVALSHA), or 'source' (EVAL with the
        source: a server without the script in its cache, reached after another had it loaded)."""
        if isinstance(error, NoScriptError):
            return "source"
        text = str(error).lower()
        if "function not found" in text:
            return "load"
        if _refuses_functions(error, text):
            self._functions = False
            return "eval"
        return None

    def _load_refused(self, error: RedisError) -> None:
        """After FUNCTION LOAD failed: a server that refuses it (an ACL) gets EVALSHA from now on;
        any other error is raised."""
        if not _refuses_functions(error, str(error).lower()):
            raise error
        self._functions = False

    def _command(self, call: Call, by_source: bool = False) -> list[Any]:
        """`call` as one raw command: FCALL, else EVALSHA, or EVAL with the script's source (which
        caches it there). Raw, for a cluster pipeline refuses redis-py's script helpers and routes
        a raw command by its keys."""
        if self._functions:
            head = ["FCALL", function_name(call.script)]
        else:
            head = ["EVAL", source(call.script)] if by_source else ["EVALSHA", sha(call.script)]
        return [*head, len(call.keys), *call.keys, *call.args]

    @staticmethod
    def _created(task: Task, reply: Reply) -> Task:
        if reply[0] != "ok":
            raise InvalidTransition(task.id, "existing", "create")
        task.created_at = task.updated_at = int(reply[1])
        return task

    @staticmethod
    def _created_many(tasks: list[Task], reply: Reply) -> Created:
        if reply[0] == "duplicate":
            return Created(list(json.loads(reply[1])), 0, replayed=True)
        if reply[0] != "ok":
            raise InvalidTransition(reply[1], "existing", "create")
        for task in tasks:
            task.created_at = task.updated_at = int(reply[1])
        return Created([t.id for t in tasks], int(reply[1]))

    @staticmethod
    def _loaded(task_id: str, raw: dict[str, str]) -> Task:
        if not raw:
            raise TaskNotFound(task_id)
        return Task.from_hash(raw)


class TaskStore(_Store):
    """Synchronous store for the consumer, the worker and the scheduler."""

    # Where `prune_token_days` goes on from: its walk of the token counts spans calls.
    _tokens_cursor = 0

    @property
    def provider(self) -> ProviderState:
        """The LLM provider's state, as the workers write it (on the control shard)."""
        return ProviderState(self.r, self.keys)

    def uptime_seconds(self) -> int:
        """How long the Redis server (the control shard's, which holds the heartbeats) has run."""
        return int(self.r.info("server")["uptime_in_seconds"])

    def _recover(self, error: RedisError) -> bool:
        """Ready the next send of a call that met `error` (see _retry_after; raised when it is the
        answer): returns whether to send the script's source."""
        retry = self._retry_after(error)
        if retry is None:
            raise error
        if retry == "load":
            try:
                self.r.function_load(library()[1], replace=True)
            except RedisError as refused:
                self._load_refused(refused)
        return retry == "source"

    def _run(self, call: Call) -> Any:
        by_source = False
        for _ in range(3):  # at most: no functions, then not in this server's script cache
            try:
                return self.r.execute_command(*self._command(call, by_source))
            except RedisError as e:
                by_source = self._recover(e)
        raise AssertionError("unreachable: EVAL needs no cache, and functions are loaded or absent")

    def _send_acked(self, call: Call, durability: Durability) -> tuple[Reply, int]:
        """The script and a WAIT on one connection: its reply, and how many replicas acknowledged."""
        by_source = False
        for _ in range(3):  # as in _run
            pipe = self.r.pipeline(transaction=False)
            pipe.execute_command(*self._command(call, by_source))
            pipe.execute_command(*durability.wait_command, **durability.wait_route(self.r, call.keys[0]))
            try:
                reply, acked = pipe.execute()
                return reply, int(acked)
            except RedisError as e:
                by_source = self._recover(e)
        raise AssertionError("unreachable: EVAL needs no cache, and functions are loaded or absent")

    def _run_durable(self, call: Call) -> Any:
        """Run a report and confirm it reached the replicas. Unconfirmed, it is sent again until
        it is (REDIS_OUTAGE_PATIENCE at most). A repeat refused because the task is no longer
        ACTIVE under this token means the first send landed (or a newer attempt took over): so
        an outcome reached during a failover is recorded once Redis is back, never lost."""
        if self.durability is None:
            return self._run(call)
        deadline = time.monotonic() + self.durability.patience
        landed: Reply | None = None  # a send that went through, not yet confirmed
        while True:
            reply, acked = self._send_acked(call, self.durability)
            wrote = reply[0] == "ok"
            try:
                self.durability.confirm(self.r, acked if wrote else None)
            except NotReplicated:
                if time.monotonic() > deadline:
                    raise
                landed = reply if wrote else landed
                time.sleep(0.5)
                continue
            return reply if wrote else landed or reply

    # --- submit and read ------------------------------------------------------------------
    def create(self, task: Task) -> Task:
        """Store a new task and queue it; fails if the id exists (ids are UUIDs, so only on a bug)."""
        return self._created(task, self._run(self.ops.create([task])))

    def get(self, task_id: str) -> Task:
        return self._loaded(task_id, self.r.hgetall(self.keys.task(task_id)))

    def history(self, task_id: str) -> list[dict[str, Any]]:
        """As AsyncTaskStore.history."""
        pipe = self.r.pipeline(transaction=False)
        _audit_reads(pipe, self.keys, task_id)
        return audit_trail(*pipe.execute())

    # --- consumer -------------------------------------------------------------------------
    def claim(self, consumer_id: str, token: str, prefer_retry: bool) -> Claim:
        """Claim the next task. The claim names every key it touches, so it is told which turn
        is due: by the previous claim's reply (kept per consumer and draw), read here at its
        list's head. A reply 'moved' (another consumer took that head, or the turns moved on)
        brings the turns due now, and the claim is sent again."""
        looks = self._looks.setdefault(consumer_id, {})
        last = self._sent.get(consumer_id)
        for tries in range(CLAIM_TRIES):
            if tries == 0 and last is not None and last[0] == token:
                look, head = last[1:]  # the same claim again (its reply was lost): the same task named
            else:
                look = looks.get(prefer_retry, "")
                head = (self.r.lindex(self.ops.looked_list(look), 0) or "") if look else ""
            self._sent[consumer_id] = (token, look, head)
            call = self.ops.claim(consumer_id, token, prefer_retry, look, head)
            status, task_id, side, values, turns = self._run(call)
            if turns:
                looks[False], looks[True] = (f"{s} {member}" if s else "" for s, member in (turns[:2], turns[2:]))
            elif status == "empty":
                looks.clear()
            if status != "moved":
                fields = {k: v or "" for k, v in zip(DISPATCH_FIELDS, values, strict=True)} if status == "ok" else None
                return Claim(status, task_id, side, fields)
        return Claim("empty", "")  # the turns moved on every time: the consumer looks again soon

    def retry_backlog(self) -> int:
        """PENDING tasks on the retry side: the retry pressure a consumer's ratio adapts to. Read
        by the consumer now and then, not by every claim (one call less per task)."""
        return side_depths(self.r.hmget(self.keys.depth, list(DEPTH_FIELDS)))["retry"]

    def wait_for_work(self, timeout: float, consumer_id: str = "") -> bool:  # noqa: ARG002 - a shard's choice
        """Block until a step adds pending work (it pushes a wake-up mark), up to `timeout`
        seconds; True when woken. The work itself stays queued until a claim takes it, so a
        consumer that dies here loses nothing."""
        return self.r.blpop([self.keys.wake], timeout) is not None

    def adopt_legacy(self, batch: int) -> int:
        """Move ids left in the pending lists of before priorities into the per-owner lists (those
        no longer PENDING are dropped); returns how many ids were taken out."""
        heads = [self.r.lrange(key, 0, batch - 1) for key in (self.keys.legacy_primary, self.keys.legacy_retry)]
        if not any(heads):
            return 0
        primary, retry = (list(zip(ids, self._places(ids), strict=True)) for ids in heads)
        return int(self._run(self.ops.adopt_legacy(primary, retry)))

    def _places(self, task_ids: list[str]) -> list[Place]:
        """Where each task's keys are (Place), read in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        _place_reads(pipe, self.keys, task_ids)
        return [place_of(values) for values in pipe.execute()] if task_ids else []

    def _run_placed(self, task_id: str, build: Callable[[Place], Call]) -> Reply:
        """Read the task's place, then run the step `build` makes for it (see Place)."""
        for _ in range(MOVED_TRIES):
            reply = self._run(build(place_of(self.r.hmget(self.keys.task(task_id), PLACE_FIELDS))))
            if reply[0] != "moved":
                return reply
        raise StaleAttempt(f"task {task_id}: moved {MOVED_TRIES} times while being read")

    def set_limits(self, limits: dict[str, int]) -> int:
        """Replace the per-key limits the claim enforces (fields `<owner>:concurrency`,
        `<owner>:daily_tokens`); every held owner is looked at again. Returns how many were held."""
        return int(self._run(self.ops.set_limits(limits)))

    def beat_worker(self, worker_id: str, boot: str, ttl: float) -> None:
        """The Celery worker of container `worker_id` is alive; `boot` names this very process, so
        its consumer can tell a replacement from the worker it dispatched to."""
        self.r.set(self.keys.worker_beat(worker_id), boot, px=int(ttl * 1000))

    def worker_beat(self, worker_id: str) -> str | None:
        """The boot id of container `worker_id`'s live Celery worker; None when none beats."""
        boot: str | None = self.r.get(self.keys.worker_beat(worker_id))
        return boot

    def inflight_count(self, consumer_id: str) -> int:
        return int(self.r.llen(self.keys.inflight(consumer_id)))

    def inflight_ids(self, consumer_id: str) -> list[str]:
        """The consumer's tasks in flight, oldest claim first (a claim appends to the list)."""
        return list(self.r.lrange(self.keys.inflight(consumer_id), 0, -1))

    def inflight_claimed_at(self, consumer_id: str) -> list[tuple[int, str]]:
        """(claimed at, epoch ms; id) of the consumer's tasks in flight, oldest claim first: what
        puts the in-flight lists of several shards back in claim order."""
        ids = self.inflight_ids(consumer_id)
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(self.keys.task(task_id), "started_at")
        return [(int(at or 0), task_id) for at, task_id in zip(pipe.execute(), ids, strict=True)]

    def beat(self, consumer_id: str, info: dict[str, Any], ttl: float) -> None:
        """Refresh the heartbeat and (re)register, so the reaper knows this in-flight list is alive;
        renew the TTL of the consumer's counts (the scripts set it only when they make the hash),
        so they outlive the consumer by CONSUMER_STATS_TTL_SECONDS."""
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.keys.heartbeat(consumer_id), json.dumps(info), px=int(ttl * 1000))
        pipe.sadd(self.keys.consumers, consumer_id)
        pipe.expire(self.keys.consumer_stats(consumer_id), CONSUMER_STATS_TTL_SECONDS)
        pipe.execute()

    def keep_consumer_stats(self, consumer_id: str) -> None:
        """Renew the TTL of the consumer's counts, as `beat` does (a shard other than the control
        shard keeps counts of the consumer too)."""
        self.r.expire(self.keys.consumer_stats(consumer_id), CONSUMER_STATS_TTL_SECONDS)

    def beat_scheduler(self, info: dict[str, Any], ttl: float) -> None:
        """Announce that a scheduler is running (any replica; the last one to beat wins)."""
        self.r.set(self.keys.scheduler_heartbeat, json.dumps(info), px=int(ttl * 1000))

    def leave(self, consumer_id: str) -> None:
        """Stop announcing this consumer; whatever is still in flight is left to `recover_orphans`."""
        self.r.delete(self.keys.heartbeat(consumer_id))

    # --- worker reports -------------------------------------------------------------------
    def complete(
        self, task_id: str, consumer_id: str, token: str, result: str, provider: str, model: str = "",
        usage: dict[str, int] | None = None,
    ) -> None:  # fmt: skip
        """ACTIVE → COMPLETED with the result, and the model and token usage when the provider said."""
        call = self.ops.complete(task_id, consumer_id, token, result, provider, model, usage)
        check(self._run_durable(call), task_id, "complete")

    def take_token(self, bucket: str, rate: float, burst: float, cost: float = 1) -> float:
        """Take `cost` tokens from the shared bucket `bucket`: 0.0 when granted, else the seconds
        to wait until they are there (nothing is taken then)."""
        return token_wait(self._run(self.ops.take_token(bucket, rate, burst, cost)))

    def adapt_rate(
        self, bucket: str, limited: bool, floor: float = 0.1, step: float = 0.02, observed: float = 0.0
    ) -> float:
        """Pace the shared bucket by the provider's answers: a 429 (`limited`) halves its rate (not
        under `floor` of the configured one), a success gives `step` back; returns the factor.
        `observed` (calls per second) makes a bucket without a configured rate adaptive: see
        adapt_rate.lua."""
        return float(self._run(self.ops.adapt_rate(bucket, limited, floor, step, 600_000, observed)))

    def paced_rate(self, bucket: str) -> float | None:
        """The base rate of an adaptive bucket (calls per second), None while there is none."""
        rate = self.r.hget(self.keys.rate_bucket(bucket), "rate")
        return float(rate) if rate else None

    def note_rejection(self, task_id: str, message: str, ttl_ms: int = 600_000) -> list[str]:
        """Count one input_rejected attempt in the run of refusals with this very message (see
        note_rejection.lua); returns the ids of the run's tasks."""
        return list(self._run(self.ops.note_rejection(task_id, message, ttl_ms)))

    def end_rejection_run(self) -> None:
        """Forget the run of refusals (a success came, or the guard acted on it)."""
        self.r.delete(self.keys.llm_rejections, self.keys.llm_rejected_ids)

    def requeue_failed(self, task_id: str) -> bool:
        """A FAILED task back to the retry list, as an operator's retry would (retry_task.lua);
        False when it is no longer FAILED (retried, deleted meanwhile)."""
        if self.r.hget(self.keys.task(task_id), "state") != State.FAILED.value:
            return False
        return bool(self._run_placed(task_id, lambda place: self.ops.retry(task_id, place))[0] == "ok")

    def save_chunk(self, task_id: str, token: str, field: str, value: str, ttl_ms: int) -> None:
        """Keep one finished piece of a long input's map-reduce; refused (StaleAttempt) unless this
        attempt still owns the task."""
        check(self._run(self.ops.save_chunk(task_id, token, field, value, ttl_ms)), task_id, "save a chunk")

    def chunks(self, task_id: str) -> dict[str, str]:
        """The finished pieces kept by earlier attempts of this task (field → JSON)."""
        return dict(self.r.hgetall(self.keys.task_chunks(task_id)))

    def drop_chunks(self, task_id: str) -> None:
        """Forget the pieces once the task completed: the result makes them useless."""
        self.r.delete(self.keys.task_chunks(task_id))

    def set_progress(self, task_id: str, token: str, progress: int, step: str = "") -> None:
        """Record how far the running attempt got (clamped to 0-100) and what it is doing; refused
        (StaleAttempt) unless this attempt still owns the task."""
        call = self.ops.set_progress(task_id, token, max(0, min(100, int(progress))), step[:200])
        check(self._run(call), task_id, "set progress")

    def schedule_retry(
        self, task_id: str, consumer_id: str, token: str, delay: float, error: str, error_type: str,
        spend: bool = True, streak: str = "reset",
    ) -> int:  # fmt: skip
        """ACTIVE → SCHEDULED after `delay` seconds, spending one retry unless `spend` is False (a
        rate limit); `streak` says what becomes of the task's run of provider 429s ('grow',
        'keep', 'reset'). Returns the retry count."""
        delay_ms = int(delay * 1000)
        call = self.ops.schedule_retry(task_id, consumer_id, token, delay_ms, error, error_type, spend, streak)
        return int(check(self._run_durable(call), task_id, "schedule a retry")[1])

    def rate_limit_streak(self, task_id: str) -> tuple[int, int]:
        """The task's provider 429s in a row and when the first came (epoch ms; 0, 0 for none),
        as `schedule_retry` counted them. Read by the attempt that owns the task, so nothing
        else changes them meanwhile."""
        count, since = self.r.hmget(self.keys.task(task_id), ["rate_limits", "rate_limited_at"])
        return int(count or 0), int(since or 0)

    def fail(self, task_id: str, consumer_id: str, token: str, target: State, error: str, error_type: str) -> None:
        check(self._run_durable(self.ops.fail(task_id, consumer_id, token, target, error, error_type)), task_id, "fail")

    def release(self, task_id: str, consumer_id: str, token: str, reason: str, error_type: str) -> None:
        """ACTIVE → PENDING at the head of the primary list, no retry spent: the attempt was given
        back before it could do its work (breaker open, dispatch failed, shutdown)."""

        def step(place: Place) -> Call:
            return self.ops.release(task_id, consumer_id, token, reason, error_type, place)

        check(self._run_placed(task_id, step), task_id, "release")

    # --- scheduler ------------------------------------------------------------------------
    def promote_due(self, batch: int) -> int:
        """One batch of the retries due (read, then promoted by a step that checks each again)."""
        due = self.r.zrangebyscore(self.keys.scheduled, "-inf", self._now_ms(), start=0, num=batch)
        return int(self._run(self.ops.promote_due(list(zip(due, self._places(due), strict=True)))))

    def _now_ms(self) -> int:
        """The Redis server's time: every process agrees on it (the scripts use it too)."""
        seconds, micros = self.r.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def fold_tally(self) -> int:
        """Add the completions' tally into the figures (the scheduler, every round); returns how
        many lines were folded."""
        folded = 0
        while (n := int(self._run(self.ops.fold_tally())[0])) > 0:
            folded += n
            if n < FOLD_BATCH:
                break
        return folded

    def recover(self, task_id: str, consumer_id: str, token: str, reason: str) -> str:
        def step(place: Place) -> Call:
            return self.ops.recover(task_id, consumer_id, token, reason, place)

        return str(self._run_placed(task_id, step)[0])

    def recover_orphans(self, lease_seconds: float, batch: int) -> int:
        """Return to the retry list every task of a consumer whose heartbeat expired, and every
        task ACTIVE longer than its lease. Safe to run anywhere, any number of times at once."""
        recovered = 0
        for consumer_id in self.dead_consumers():
            reason = f"consumer {consumer_id} stopped (heartbeat expired)"
            for task_id in self.inflight_ids(consumer_id):
                recovered += self.recover(task_id, consumer_id, "", reason) in ("requeued", "dead")
            self.r.srem(self.keys.consumers, consumer_id)
        return recovered + self.recover_expired_leases(lease_seconds, batch)

    def consumer_alive(self, id_prefix: str) -> bool:
        """Whether a registered consumer whose id starts with `id_prefix` (a container's
        WORKER_ID and ':') has a live heartbeat: the small registry is read, never the keyspace."""
        ours = [c for c in self.r.smembers(self.keys.consumers) if c.startswith(id_prefix)]
        return bool(ours) and any(self.r.mget([self.keys.heartbeat(c) for c in ours]))

    def dead_consumers(self) -> list[str]:
        """The registered consumers whose heartbeat expired: their in-flight tasks are orphans."""
        return [c for c in self.r.smembers(self.keys.consumers) if not self.r.exists(self.keys.heartbeat(c))]

    def recover_expired_leases(self, lease_seconds: float, batch: int) -> int:
        """Return to the retry list one batch of the tasks ACTIVE longer than their lease."""
        recovered = 0
        cutoff = self._now_ms() - int(lease_seconds * 1000)
        active = self.keys.state_index(State.ACTIVE)
        for task_id in self.r.zrangebyscore(active, "-inf", cutoff, start=0, num=batch):
            consumer_id, token = self.r.hmget(self.keys.task(task_id), ["consumer", "attempt"])
            reason = f"lease of {lease_seconds:.0f}s expired"
            recovered += self.recover(task_id, consumer_id or "", token or "", reason) in ("requeued", "dead")
        return recovered

    def prune_token_days(self, count: int) -> int:
        """Delete the per-owner token counts of the days before yesterday (no claim reads them
        again; yesterday stays, for a clock a little behind at midnight): one HSCAN page of about
        `count` fields per call, going on from where the last call stopped, so a call stays short
        however many owners there are. Returns how many fields went."""
        seconds, _ = self.r.time()
        oldest_kept = seconds // 86400 - 1
        key = self.keys.owner_tokens
        self._tokens_cursor, counts = self.r.hscan(key, self._tokens_cursor, count=count)
        old = [field for field in counts if token_day(field) < oldest_kept]
        if old:
            self.r.hdel(key, *old)
        return len(old)

    def purge(self, state: State, retention_ms: int, max_keep: int | None, batch: int) -> int:
        """Delete one batch of `state`'s tasks older than `retention_ms` (0: any age), or else the
        oldest beyond `max_keep` (None: no bound); returns how many went. The candidates and
        their owners are read first (three round trips), so the script is given every key it
        deletes from; a candidate that changed meanwhile is left to the next batch."""
        now = self.r.time()
        pipe = self.r.pipeline(transaction=False)
        _candidate_reads(pipe, self.keys, state, batch)
        task_ids = purge_candidates(now, pipe.execute(), retention_ms, max_keep)
        if not task_ids:
            return 0
        pipe = self.r.pipeline(transaction=False)
        _owner_reads(pipe, self.keys, task_ids)
        targets = purge_targets(task_ids, pipe.execute())
        return int(self._run(self.ops.purge(state, retention_ms, max_keep, targets)))


class AsyncTaskStore(_Store):
    """Asyncio store for the API: submit, read, list and operator transitions."""

    @property
    def provider(self) -> AsyncProviderState:
        """The LLM provider's state, as the API reads it (on the control shard)."""
        return AsyncProviderState(self.r, self.keys)

    async def now_ms(self) -> int:
        """The Redis server's time: every process agrees on it (the scripts' stamps use it)."""
        seconds, micros = await self.r.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def pubsub(self) -> Any:
        """A pub/sub connection of its own, for the live stream to subscribe to `event_channels`."""
        return self.r.pubsub()

    async def _recover(self, error: RedisError) -> bool:
        """As TaskStore._recover."""
        retry = self._retry_after(error)
        if retry is None:
            raise error
        if retry == "load":
            try:
                await self.r.function_load(library()[1], replace=True)
            except RedisError as refused:
                self._load_refused(refused)
        return retry == "source"

    async def _run(self, call: Call) -> Any:
        """As TaskStore._run."""
        by_source = False
        for _ in range(3):
            try:
                return await self.r.execute_command(*self._command(call, by_source))
            except RedisError as e:
                by_source = await self._recover(e)
        raise AssertionError("unreachable: EVAL needs no cache, and functions are loaded or absent")

    async def _run_durable(self, call: Call) -> Any:
        """Run a submit and confirm it reached the replicas, or raise NotReplicated (a 503: the
        client's retry with the same Idempotency-Key gets the tasks, or creates them on the new
        master if the failover discarded them)."""
        if self.durability is None:
            return await self._run(call)
        reply, acked = await self._send_acked(call, self.durability)
        await self.durability.confirm_async(self.r, acked if reply[0] in ("ok", "duplicate") else None)
        return reply

    async def _send_acked(self, call: Call, durability: Durability) -> tuple[Reply, int]:
        """As TaskStore._send_acked."""
        by_source = False
        for _ in range(3):
            pipe = self.r.pipeline(transaction=False)
            pipe.execute_command(*self._command(call, by_source))
            route = durability.wait_route(await learned(self.r), call.keys[0])
            pipe.execute_command(*durability.wait_command, **route)
            try:
                reply, acked = await pipe.execute()
                return reply, int(acked)
            except RedisError as e:
                by_source = await self._recover(e)
        raise AssertionError("unreachable: EVAL needs no cache, and functions are loaded or absent")

    def shard_for(self, idempotency_key: str) -> int:  # noqa: ARG002 - one shard: always it
        """The shard a submit goes to (see core/shards.py); one store is one shard."""
        return 0

    def new_task_id(self, shard: int) -> str:  # noqa: ARG002
        """A new task id that names `shard` (see core/shards.py); one store is one shard."""
        return str(uuid.uuid4())

    @property
    def event_channels(self) -> list[str]:
        """The pub/sub channels the live stream listens to: one per shard."""
        return [self.keys.events]

    async def channel_counters(self) -> dict[str, dict[str, int]]:
        """Each event channel's counters now (an event carries its own shard's new values)."""
        return {self.keys.events: await self.counters()}

    async def create(self, task: Task) -> Task:
        return self._created(task, await self._run_durable(self.ops.create([task])))

    async def create_many(self, tasks: list[Task], idempotency_key: str = "", retention_ms: int = 0) -> Created:
        """Store and queue `tasks` in one atomic step. With an `idempotency_key`, a key already
        used within `retention_ms` creates nothing and returns the ids it created then."""
        call = self.ops.create(tasks, idempotency_key, retention_ms)
        return self._created_many(tasks, await self._run_durable(call))

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        """The task's audit trail, oldest first: state changes, each with its error if it had one."""
        pipe = self.r.pipeline(transaction=False)
        _audit_reads(pipe, self.keys, task_id)
        return audit_trail(*await pipe.execute())

    async def take_token(self, bucket: str, rate: float, burst: float, cost: float = 1) -> float:
        """As `TaskStore.take_token`."""
        return token_wait(await self._run(self.ops.take_token(bucket, rate, burst, cost)))

    async def requeue_dead(self, task_ids: list[str], batch: int) -> tuple[int, list[str]]:
        """DLQ → PENDING for `task_ids` (or, given none, one batch of the oldest dead); returns how
        many moved and which of the given ids were not dead."""
        ids = task_ids or await self.r.zrange(self.keys.dlq, 0, batch - 1)
        if not ids:
            return 0, []
        pipe = self.r.pipeline(transaction=False)
        _place_reads(pipe, self.keys, ids)
        places = [place_of(values) for values in await pipe.execute()]
        reply = await self._run(self.ops.requeue_dead(list(zip(ids, places, strict=True))))
        return int(reply[0]), list(json.loads(reply[1]))

    async def _run_placed(self, task_id: str, build: Callable[[Place], Call]) -> Reply:
        """As TaskStore._run_placed."""
        for _ in range(MOVED_TRIES):
            reply = await self._run(build(place_of(await self.r.hmget(self.keys.task(task_id), PLACE_FIELDS))))
            if reply[0] != "moved":
                return reply
        raise StaleAttempt(f"task {task_id}: moved {MOVED_TRIES} times while being read")

    async def purge(self, state: State, retention_ms: int, max_keep: int | None, batch: int) -> int:
        """As TaskStore.purge."""
        now = await self.r.time()
        pipe = self.r.pipeline(transaction=False)
        _candidate_reads(pipe, self.keys, state, batch)
        task_ids = purge_candidates(now, await pipe.execute(), retention_ms, max_keep)
        if not task_ids:
            return 0
        pipe = self.r.pipeline(transaction=False)
        _owner_reads(pipe, self.keys, task_ids)
        targets = purge_targets(task_ids, await pipe.execute())
        return int(await self._run(self.ops.purge(state, retention_ms, max_keep, targets)))

    async def get(self, task_id: str) -> Task:
        return self._loaded(task_id, await self.r.hgetall(self.keys.task(task_id)))

    async def owner_of(self, task_id: str) -> str:
        """The id of the API key that submitted the task ("" without keys); TaskNotFound if none."""
        fields = await self.r.hmget(self.keys.task(task_id), ["state", "owner"])
        if fields[0] is None:
            raise TaskNotFound(task_id)
        return str(fields[1] or "")

    async def get_many(self, task_ids: list[str]) -> list[Task]:
        """Tasks in the given order; ids whose hash vanished meanwhile are skipped."""
        pipe = self.r.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hgetall(self.keys.task(task_id))
        return [Task.from_hash(raw) for raw in await pipe.execute() if raw]

    async def retry(self, task_id: str) -> State:
        reply = await self._run_placed(task_id, lambda place: self.ops.retry(task_id, place))
        return State(check(reply, task_id, "retry")[1])

    async def cancel(self, task_id: str) -> State:
        reply = await self._run_placed(task_id, lambda place: self.ops.cancel(task_id, place))
        return State(check(reply, task_id, "cancel")[1])

    async def delete(self, task_id: str) -> None:
        check(await self._run_placed(task_id, lambda place: self.ops.delete(task_id, place)), task_id, "delete")

    async def page(
        self,
        state: State | None,
        limit: int,
        cursor: str | None,
        owner: str = "",
        task_type: str = "",
        state_order: bool = False,
        priority: int | None = None,
    ) -> Page:
        """Newest first, a page of the tasks in `state`, of `task_type` and of `owner` (each unset:
        any), from an index (see `_source`); never an unbounded scan.

        With at most one filter the page comes whole from that filter's own index (owner, type,
        state; all tasks without one): full pages, one read. With more, the index that `_source`
        picks is read on and each entry checked against the other filters (one HMGET each), until
        the page is full, the index ends, or FILTER_SCAN_MAX entries were checked: then the page is
        short and `cursor` continues after the last entry checked.

        The cursor is the last entry's "score:id" (ties on the score are resolved by id, in the
        order Redis keeps them, so a page boundary never skips or repeats an entry), plus ":state"
        or ":type" when the listing picked between two indexes, so every page reads the same one.
        `state_order` makes a listing by state and type read the state index whatever the sizes
        (the DLQ view: most recently dead first). `priority` is always checked entry by entry (no
        index per level: a listing by priority alone walks all tasks, FILTER_SCAN_MAX a page).
        """
        index, tag, wanted = await self._source(state, owner, task_type, cursor, state_order)
        if priority is not None:
            wanted["priority"] = str(priority)
        if not wanted:
            rows = await self._rows_after(index, cursor, limit + 1)
            more = len(rows) > limit
            return page_of(rows[:limit], _cursor_of(rows[limit - 1], tag) if more else None, tag)
        return await self._filtered_page(index, tag, wanted, limit, cursor)

    async def _source(
        self, state: State | None, owner: str, task_type: str, cursor: str | None, state_order: bool
    ) -> tuple[str, str, dict[str, str]]:
        """(the index a listing pages, its cursor tag, the hash fields each entry must match).

        An owner's listing reads its owner index (a key never walks other keys' tasks). Otherwise
        the state index or the type index; with both filters the smaller of the two at the first
        page (its entries match the other filter most often), carried on by the cursor's tag. The
        order is that index's: time of entering the state, or creation time."""
        if owner:  # the index is the owner's own: the other filters are checked
            wanted = {"state": state.value if state else "", "task_type": task_type}
            return self.keys.owner_tasks(owner), "", {f: v for f, v in wanted.items() if v}
        if state and task_type:
            tag = "state" if state_order else _cursor_tag(cursor) or await self._smaller(state, task_type)
            if tag == "type":
                return self.keys.type_tasks(task_type), tag, {"state": state.value}
            return self.keys.state_index(state), tag, {"task_type": task_type}
        if task_type:
            return self.keys.type_tasks(task_type), "", {}
        return (self.keys.state_index(state) if state else self.keys.all_tasks), "", {}

    async def _smaller(self, state: State, task_type: str) -> str:
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(self.keys.state_index(state))
        pipe.zcard(self.keys.type_tasks(task_type))
        in_state, of_type = await pipe.execute()
        return "type" if of_type < in_state else "state"

    async def _rows_after(self, index: str, cursor: str | None, count: int) -> list[tuple[str, float]]:
        """Up to `count` (id, score) of `index`, newest first, after the entry `cursor` names."""
        if cursor is None:
            return list(await self.r.zrevrangebyscore(index, "+inf", "-inf", start=0, num=count, withscores=True))
        score, last_id = cursor.split(":")[:2]
        ties = await self.r.zrevrangebyscore(index, score, score, withscores=True)
        rows = [(m, s) for m, s in ties if m < last_id][:count]
        if len(rows) < count:
            rows += await self.r.zrevrangebyscore(
                index, f"({score}", "-inf", start=0, num=count - len(rows), withscores=True
            )
        return rows

    async def _filtered_page(
        self, index: str, tag: str, wanted: dict[str, str], limit: int, cursor: str | None
    ) -> Page:
        """`limit` entries of `index` after `cursor` whose task matches `wanted`, checking at most
        FILTER_SCAN_MAX entries, or four pages' worth for a large `limit` (a bound on the work of
        one request, whatever the data). Read in batches that double from a page's size."""
        budget = max(FILTER_SCAN_MAX, 4 * (limit + 1))
        found: list[tuple[str, float]] = []
        checked, batch = 0, limit + 1
        while True:
            rows = await self._rows_after(index, cursor, batch)
            for row, keep in zip(rows, await self._matches(rows, wanted), strict=True):
                if keep:
                    found.append(row)
                if len(found) > limit:  # one past the page: there is a next page, and it starts here
                    return page_of(found[:limit], _cursor_of(found[limit - 1], tag), tag)
            checked += len(rows)
            if len(rows) < batch:
                return page_of(found, None, tag)
            cursor = _cursor_of(rows[-1], tag)
            if checked >= budget:
                return page_of(found, cursor, tag)
            batch = min(2 * batch, budget - checked)

    async def _matches(self, rows: list[tuple[str, float]], wanted: dict[str, str]) -> list[bool]:
        """For each entry, whether its task (still there) has every field value in `wanted`."""
        pipe = self.r.pipeline(transaction=False)
        names = list(wanted)
        for task_id, _ in rows:
            pipe.hmget(self.keys.task(task_id), [*names, "state"])
        expected = [wanted[n] for n in names]
        # A task stored before priorities has none, and runs at the default.
        default = {"priority": str(DEFAULT_PRIORITY)}

        def values(found: list[str | None]) -> list[str | None]:
            return [v if v is not None else default.get(n) for n, v in zip(names, found, strict=True)]

        return [found[-1] is not None and values(found[:-1]) == expected for found in await pipe.execute()]

    async def depths(self) -> dict[str, int]:
        """Lengths of the queues: PENDING per side (moved with the lists in the same scripts),
        and the scheduled set and the DLQ themselves."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.keys.depth, list(DEPTH_FIELDS))
        pipe.zcard(self.keys.scheduled)
        pipe.zcard(self.keys.dlq)
        levels, scheduled, dlq = await pipe.execute()
        return {**side_depths(levels), "scheduled": scheduled, "dlq": dlq}

    async def priority_depths(self) -> list[dict[str, int]]:
        """PENDING per priority level (0 first) on each side: [{priority, primary, retry}, …]."""
        raw = await self.r.hgetall(self.keys.depth)
        return [{"priority": p, **{side: int(raw.get(f"{side}:{p}", 0)) for side in SIDES}} for p in PRIORITIES]

    async def top_owners(self, count: int) -> list[dict[str, Any]]:
        """The `count` owners with the most PENDING tasks, most first: [{owner, backlog, active}]."""
        rows = await self.r.zrevrange(self.keys.owners_backlog, 0, count - 1, withscores=True)
        if not rows:
            return []
        active = await self.r.hmget(self.keys.owners_active, [owner for owner, _ in rows])
        return [{"owner": owner, "backlog": int(backlog), "active": int(running or 0)}
                for (owner, backlog), running in zip(rows, active, strict=True)]  # fmt: skip

    async def usage(self, owner: str) -> OwnerUsage:
        """One owner's limits as the claim enforces them, and what it uses of them now."""
        (seconds, _), limits = await self.r.time(), self.keys.owner_limits
        day = seconds // 86400
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(limits, [f"{owner}:concurrency", f"{owner}:daily_tokens", "*:concurrency", "*:daily_tokens"])
        pipe.hget(self.keys.owners_active, owner)
        pipe.zscore(self.keys.owners_backlog, owner)
        pipe.hget(self.keys.owner_tokens, f"{day}:{owner}")
        pipe.zscore(self.keys.owners_held, owner)
        (cap, budget, any_cap, any_budget), active, backlog, tokens, held = await pipe.execute()
        return OwnerUsage(
            owner=owner, day=day, concurrency=_int_or_none(cap or any_cap),
            daily_tokens=_int_or_none(budget or any_budget), active=int(active or 0), backlog=int(backlog or 0),
            tokens_today=int(tokens or 0), held_until=None if held is None else float(held),
        )  # fmt: skip

    async def state_counts(self) -> dict[str, int]:
        """Tasks per state, from the state indexes (changed only inside the transition scripts)."""
        pipe = self.r.pipeline(transaction=False)
        for state in State:
            pipe.zcard(self.keys.state_index(state))
        return dict(zip([s.value for s in State], await pipe.execute(), strict=True))

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def live_consumers(self) -> list[dict[str, Any]]:
        """Heartbeats of the registered consumers that are alive now, each as its JSON payload
        plus `id`, sorted by id. A registered id whose heartbeat expired is a dead consumer waiting
        for the reaper, so it is left out."""
        ids = sorted(await self.r.smembers(self.keys.consumers))
        if not ids:
            return []
        beats = await self.r.mget([self.keys.heartbeat(consumer_id) for consumer_id in ids])
        return [self._heartbeat_info(i, raw) for i, raw in zip(ids, beats, strict=True) if raw is not None]

    @staticmethod
    def _heartbeat_info(consumer_id: str, raw: str) -> dict[str, Any]:
        """A heartbeat's payload; one that is not a JSON object still proves the consumer alive."""
        try:
            info = json.loads(raw)
        except ValueError:
            info = None
        return {**info, "id": consumer_id} if isinstance(info, dict) else {"id": consumer_id}

    # --- operations figures: each a handful of O(1) reads, whatever the number of tasks ----------
    async def _folded(self, *reads: str, with_time: bool = False) -> list[Any]:
        """The figures `reads` names (FOLD_READS), each a hash, read in the step that first adds
        the completions' tally into them (fold_tally.lua: one call, as a plain read would be);
        with `with_time`, the server's time in ms first."""
        while True:
            reply: list[Any] = await self._run(self.ops.fold_tally(reads, with_time))
            if int(reply[0]) < FOLD_BATCH:
                hashes = [_pairs(flat) for flat in reply[2:]]
                return [int(reply[1]), *hashes] if with_time else hashes

    async def counters(self) -> dict[str, int]:
        """The global counters (submitted, started, completed, failed, dead, retried, …)."""
        (raw,) = await self._folded("counters")
        return {name: int(value) for name, value in raw.items()}

    async def type_counters(self) -> dict[str, dict[str, int]]:
        """The per-type counters (type → counter → value), as the transition scripts moved them;
        a type with none moved yet is absent."""
        by_type: dict[str, dict[str, int]] = {}
        (raw,) = await self._folded("types")
        for field, value in raw.items():
            task_type, _, counter = field.rpartition(":")
            by_type.setdefault(task_type, {})[counter] = int(value)
        return by_type

    async def type_sizes(self, task_types: list[str]) -> dict[str, int]:
        """Tasks stored of each type now, from the type indexes (kept by create, delete, purge)."""
        pipe = self.r.pipeline(transaction=False)
        for task_type in task_types:
            pipe.zcard(self.keys.type_tasks(task_type))
        return dict(zip(task_types, await pipe.execute(), strict=True))

    async def durations(self) -> Durations:
        (raw,) = await self._folded("durations")
        counts = [int(raw.get(str(bound), 0)) for bound in DURATION_BUCKETS_MS]
        overflow = int(raw.get("inf", 0))
        # The count is the buckets' total (the scripts keep no `count` field: one call less each).
        return Durations(counts, overflow, int(raw.get("sum", 0)), sum(counts) + overflow)

    async def _rings(self) -> tuple[int, dict[str, str], dict[str, str]]:
        """The server's time in ms and both throughput rings, read in the step that folds the
        tally into them."""
        now, by_second, by_minute = await self._folded("seconds", "minutes", with_time=True)
        return now, by_second, by_minute

    async def throughput(self) -> dict[str, dict[str, int]]:
        """Tasks finished (completed, failed) in the last minute and the last hour, from the rings."""
        now, by_second, by_minute = await self._rings()
        return {
            "last_minute": ring_sum(by_second, now // 1000, 60),
            "last_hour": ring_sum(by_minute, now // 60_000, 60),
        }

    async def throughput_history(self) -> tuple[int, list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """The rings as they are: (the server's time in ms, the last 60 seconds, the last 60
        minutes), each bucket (start in epoch ms, completed, failed), oldest first, zeros where
        nothing finished. Read in one round trip with the time, so a reader can tell which of the
        transitions it hears about later are already counted here (their `at` is after the time)."""
        now, by_second, by_minute = await self._rings()
        return now, ring_buckets(by_second, 1000, now, 60), ring_buckets(by_minute, 60_000, now, 60)

    async def consumer_stats(self, consumer_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Per consumer: settled attempts (processed, completed, failed) and the tasks it took from
        each list (`taken`: primary, retry; counted by claim_task); zeros for one with none."""
        pipe = self.r.pipeline(transaction=False)
        for consumer_id in consumer_ids:
            pipe.hgetall(self.keys.consumer_stats(consumer_id))
        rows = await pipe.execute()
        return {c: _consumer_figures(row) for c, row in zip(consumer_ids, rows, strict=True)}

    async def scheduler_info(self) -> dict[str, Any] | None:
        """The last scheduler heartbeat, or None when no scheduler beat within its TTL."""
        raw = await self.r.get(self.keys.scheduler_heartbeat)
        return json.loads(raw) if raw else None

    async def queue_ids(self, queue: str, offset: int, limit: int) -> tuple[int, list[tuple[str, int | None]]]:
        """(length, one page of entries) of a queue, in queue order; each entry is (id, score or
        None). For `primary` and `retry`, owner by owner in the order their turns come: the most
        urgent level first, each owner's tasks FIFO (the claims interleave the owners), the held
        owners last. For the sorted sets, by score (due time, time of death)."""
        if queue in LIST_QUEUES:
            return await self._pending_ids(queue, offset, limit)
        key = self.keys.scheduled if queue == "scheduled" else self.keys.dlq
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(key)
        pipe.zrange(key, offset, offset + limit - 1, withscores=True)
        total, rows = await pipe.execute()
        return int(total), [(i, int(score)) for i, score in rows]

    async def _pending_ids(self, side: str, offset: int, limit: int) -> tuple[int, list[tuple[str, int | None]]]:
        """A page of one side's PENDING ids (see `queue_ids`); reads every owner's list length,
        an operator's view, not a hot path."""
        ready = await self.r.zrange(self.keys.ready(side), 0, -1)
        lists = [self.keys.pending(side, int(member[0]), member[1:]) for member in ready]
        held = await self.r.zrange(self.keys.owners_held, 0, -1)
        lists += [self.keys.pending(side, level, owner) for level in PRIORITIES for owner in held]
        pipe = self.r.pipeline(transaction=False)
        for key in lists:
            pipe.llen(key)
        lengths = await pipe.execute()
        ids: list[str] = []
        skip = offset
        for key, length in zip(lists, lengths, strict=True):
            if len(ids) >= limit:
                break
            if skip >= length:
                skip -= length
                continue
            ids += await self.r.lrange(key, skip, skip + limit - len(ids) - 1)
            skip = 0
        return sum(lengths), [(i, None) for i in ids]

    async def server_info(self) -> dict[str, Any]:
        """Redis's version, memory and clients, for the diagnostics page."""
        info = await self.r.info()
        fields = ["redis_version", "uptime_in_seconds", "used_memory", "used_memory_human", "maxmemory"]
        fields += ["connected_clients", "blocked_clients", "role"]
        return {name: info.get(name) for name in fields}


# The fields of `tasks:depth`: PENDING per side and level. A side's depth is their sum (the scripts
# keep no per-side field: one HINCRBY less per move; one left by an older version is not read).
DEPTH_FIELDS = tuple(f"{side}:{level}" for side in SIDES for level in PRIORITIES)


def side_depths(values: list[str | None]) -> dict[str, int]:
    """PENDING per side from the values of DEPTH_FIELDS (an HMGET of them, in that order)."""
    totals = dict.fromkeys(SIDES, 0)
    for field, value in zip(DEPTH_FIELDS, values, strict=True):
        totals[field.split(":")[0]] += int(value or 0)
    return totals


# What the audit trail reads of the task's hash: the entries no script writes come from it.
AUDIT_FIELDS = ("state", "created_at", "started_at", "finished_at", "consumer")


def _audit_reads(pipe: Any, keys: Keys, task_id: str) -> None:
    """The entries first, then the hash: a step landing between the two reads then shows as not
    yet happened (its entries were not read, and the hash no longer says it is running), never twice."""
    pipe.lrange(keys.history(task_id), 0, -1)
    pipe.hmget(keys.task(task_id), list(AUDIT_FIELDS))


def audit_trail(stored: list[str], fields: list[str | None]) -> list[dict[str, Any]]:
    """A task's audit trail: its stored entries with those no script writes put back from its
    hash (`fields`: the values of AUDIT_FIELDS), in their places. The creation comes first; the
    start of the latest attempt, while it runs or once it completed, and the completion come
    last. Stored entries that already hold them (written by the code of before) are kept as
    they are (scripts/_lib.lua began_attempt)."""
    entries: list[dict[str, Any]] = [json.loads(entry) for entry in stored]
    state, created_at, started_at, finished_at, consumer = fields
    if state is None:
        return entries
    if not entries or (entries[0].get("from"), entries[0].get("to")) != ("", State.PENDING.value):
        entries.insert(0, {"at": int(created_at or 0), "from": "", "to": State.PENDING.value})
    running = (State.ACTIVE.value, State.COMPLETED.value)
    if state in running and entries[-1].get("to") not in running:
        entries.append({"at": int(started_at or 0), "from": State.PENDING.value, "to": State.ACTIVE.value,
                        "worker": consumer or ""})  # fmt: skip
    if state == State.COMPLETED.value and entries[-1].get("to") != State.COMPLETED.value:
        entries.append({"at": int(finished_at or 0), "from": State.ACTIVE.value, "to": State.COMPLETED.value,
                        "worker": consumer or ""})  # fmt: skip
    return entries


def _pairs(flat: list[str]) -> dict[str, str]:
    """A hash as a script returns HGETALL's reply: field, value, field, value…"""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _int_or_none(raw: str | None) -> int | None:
    return None if raw is None else int(raw)


def _consumer_figures(row: dict[str, str]) -> dict[str, Any]:
    figures: dict[str, Any] = {kind: int(row.get(kind, 0)) for kind in ("completed", "failed")}
    # Every settled attempt is one or the other (the scripts keep no `processed` field).
    figures["processed"] = figures["completed"] + figures["failed"]
    figures["taken"] = {source: int(row.get(f"taken_{source}", 0)) for source in ("primary", "retry")}
    return figures


RING_KINDS = ("completed", "failed")


def ring_counts(raw: dict[str, str]) -> dict[int, list[int]]:
    """A throughput ring's fields (`<bucket>:<kind>`, _lib.lua tick()) as bucket → [completed,
    failed]. Fields of any other shape (the slots of the layout before issue 19) are left out."""
    counts: dict[int, list[int]] = {}
    for field, value in raw.items():
        bucket, _, kind = field.partition(":")
        if kind in RING_KINDS and bucket.isdigit():
            counts.setdefault(int(bucket), [0, 0])[RING_KINDS.index(kind)] += int(value)
    return counts


def ring_buckets(raw: dict[str, str], unit_ms: int, now_ms: int, window: int) -> list[tuple[int, int, int]]:
    """A throughput ring's last `window` buckets up to the one holding `now_ms`, oldest first, as
    (start in epoch ms, completed, failed), zeros where nothing finished."""
    counts = ring_counts(raw)
    current = now_ms // unit_ms
    rows = []
    for bucket in range(current - window + 1, current + 1):
        completed, failed = counts.get(bucket, (0, 0))
        rows.append((bucket * unit_ms, completed, failed))
    return rows


def ring_sum(raw: dict[str, str], current: int, window: int) -> dict[str, int]:
    """Sum a throughput ring's buckets within `window` buckets up to `current` (older ones that
    are still there until the next tick deletes them are skipped)."""
    totals = [0, 0]
    for bucket, counts in ring_counts(raw).items():
        if current - window < bucket <= current:
            totals = [totals[0] + counts[0], totals[1] + counts[1]]
    return dict(zip(RING_KINDS, totals, strict=True))
