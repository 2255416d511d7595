"""Invariant checks and state builders shared by the data-layer tests.

Everything here reads Redis through `store.keys`, so the tests spell no key names either.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import fakeredis

from core.keys import DEFAULT_PRIORITY, SIDES, Keys
from core.states import State
from core.store import AsyncTaskStore, TaskStore, new_token
from core.task import Task

T = TypeVar("T")

CONSUMER = "c1"
# States whose only place is their own index (the design's "terminal state" place).
_INDEX_ONLY = (State.COMPLETED, State.FAILED, State.CANCELLED)


@dataclass
class Stores:
    """A sync and an asyncio store on the same data, and the loop the asyncio one runs on."""

    sync: TaskStore
    aio: AsyncTaskStore
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


def new_task(max_retries: int = 3, task_id: str | None = None, task_type: str = "summarize") -> Task:
    return Task(id=task_id or uuid.uuid4().hex, task_type=task_type, content="some text", max_retries=max_retries)


def is_fake(store: TaskStore) -> bool:
    return isinstance(store.r, fakeredis.FakeRedis)


def stored_before_priorities(store: TaskStore, list_key: str) -> str:
    """A PENDING task as a deployment from before issue 18 left it: no `priority` field, its id in
    `list_key` (the old single pending list, or a consumer's in-flight list where an idle
    consumer's blocking BLMOVE moved it unclaimed); returns its id."""
    task = new_task()
    store.r.hset(store.keys.task(task.id), mapping={k: v for k, v in task.to_hash().items() if k != "priority"})
    for index in (store.keys.state_index(State.PENDING), store.keys.all_tasks, store.keys.type_tasks(task.task_type)):
        store.r.zadd(index, {task.id: 0})
    store.r.rpush(list_key, task.id)
    return task.id


def queued(r: Any, keys: Keys, side: str = "primary", priority: int = DEFAULT_PRIORITY, owner: str = "") -> list[str]:
    """The ids waiting in one owner's list on one side at one priority, in claim order (FIFO)."""
    return list(r.lrange(keys.pending(side, priority, owner), 0, -1))


def pending_lists(store: TaskStore) -> dict[str, list[str]]:
    """Every per-owner pending list (side:priority:owner → ids), the old single lists aside."""
    prefix, legacy = store.keys.pending_prefix, {store.keys.legacy_primary, store.keys.legacy_retry}
    found = {}
    for key in store.r.scan_iter(match=prefix + "*"):
        if key not in legacy:
            found[key[len(prefix) :]] = list(store.r.lrange(key, 0, -1))
    return found


def claim_one(store: TaskStore, task_id: str, consumer: str = CONSUMER) -> str:
    """Claim the head of the primary list, which must be `task_id`; returns the attempt token."""
    token = new_token()
    claim = store.claim(consumer, token, prefer_retry=False)
    assert (claim.status, claim.task_id) == ("ok", task_id)
    return token


def to_retry_list(store: TaskStore, task: Task) -> None:
    """create → claim → schedule_retry(0) → promote_due: the task waits at the tail of the retry list."""
    store.create(task)
    token = claim_one(store, task.id)
    store.schedule_retry(task.id, CONSUMER, token, 0, "boom", "transient")
    assert store.promote_due(100) == 1


def make_in_state(stores: Stores, state: State, max_retries: int = 3, task_type: str = "summarize") -> Task:
    """A fresh task brought to `state` through the transitions themselves (it must be the only
    task waiting in the primary list, for a state that needs a claim)."""
    store = stores.sync
    task = store.create(new_task(max_retries, task_type=task_type))
    if state is State.CANCELLED:
        assert stores.run(stores.aio.cancel(task.id)) is State.PENDING
    elif state is not State.PENDING:
        token = claim_one(store, task.id)
        if state is State.SCHEDULED:
            store.schedule_retry(task.id, CONSUMER, token, 3600, "boom", "transient")
        elif state is State.COMPLETED:
            store.complete(task.id, CONSUMER, token, "summary", "offline")
        elif state in (State.FAILED, State.DLQ):
            store.fail(task.id, CONSUMER, token, state, "nope", "input_rejected")
    assert store.get(task.id).state is state
    return task


# --- where an id is -----------------------------------------------------------------------------
def places(store: TaskStore, task_id: str) -> list[str]:
    """Every queue structure holding `task_id` (one entry per occurrence), state indexes aside."""
    k, r = store.keys, store.r
    found = [name.split(":")[0] for name, ids in pending_lists(store).items() for i in ids if i == task_id]
    prefix = k.inflight("")
    for key in sorted(r.scan_iter(match=k.inflight("*"))):
        found += [f"inflight:{key[len(prefix) :]}"] * r.lrange(key, 0, -1).count(task_id)
    if r.zscore(k.scheduled, task_id) is not None:
        found.append("scheduled")
    if r.zscore(k.dlq, task_id) is not None:
        found.append("dlq")
    found += [s.value for s in _INDEX_ONLY if r.zscore(k.state_index(s), task_id) is not None]
    return found


def indexes_holding(store: TaskStore, task_id: str) -> list[State]:
    return [s for s in State if store.r.zscore(store.keys.state_index(s), task_id) is not None]


def type_indexes_holding(store: TaskStore, task_id: str) -> dict[str, float]:
    """Every type index holding `task_id`, by type, with its score there."""
    prefix, found = store.keys.type_tasks(""), {}
    for key in store.r.scan_iter(match=store.keys.type_tasks("*")):
        score = store.r.zscore(key, task_id)
        if score is not None:
            found[key[len(prefix) :]] = score
    return found


def assert_one_place(store: TaskStore, task_id: str) -> Task:
    """The design's invariant: the id is in exactly one place, the one its state names, and in
    exactly one state index (its state's); returns the task."""
    task = store.get(task_id)
    expected = {
        State.PENDING: {"primary", "retry"},
        State.ACTIVE: {f"inflight:{task.consumer}"},
        State.SCHEDULED: {"scheduled"},
        State.DLQ: {"dlq"},
    }.get(task.state, {task.state.value})
    where = places(store, task_id)
    assert len(where) == 1 and where[0] in expected, f"{task_id} ({task.state.value}) is in {where}"
    assert indexes_holding(store, task_id) == [task.state]
    assert store.r.zscore(store.keys.all_tasks, task_id) is not None
    assert type_indexes_holding(store, task_id) == {task.task_type: task.created_at}, "in its type's index only"
    if task.state is State.SCHEDULED:
        assert store.r.zscore(store.keys.scheduled, task_id) == task.due_at
    assert_queues_consistent(store)
    return task


def assert_queues_consistent(store: TaskStore) -> None:
    """The pending-work structures agree with the tasks: each list holds PENDING ids of its own
    priority and owner; the depths and backlogs are the lists' lengths; an owner is in a side's
    ready set at a level exactly while it has work there and is not held; the running counts per
    owner are the ACTIVE tasks'."""
    r, k = store.r, store.keys
    depth: dict[str, int] = {}
    backlog: dict[str, int] = {}
    ready: dict[str, set[str]] = {side: set() for side in SIDES}
    held = set(r.zrange(k.owners_held, 0, -1))
    kept: dict[str, set[str]] = {owner: set() for owner in held}
    for name, ids in pending_lists(store).items():
        side, level, owner = name.split(":", 2)
        for task_id in ids:
            state, priority, task_owner = r.hmget(k.task(task_id), ["state", "priority", "owner"])
            assert (state, priority or "5", task_owner or "") == ("PENDING", level, owner), f"{task_id} in {name}"
        if ids:
            depth[f"{side}:{level}"] = depth.get(f"{side}:{level}", 0) + len(ids)
            backlog[owner] = backlog.get(owner, 0) + len(ids)
            if owner not in held:
                ready[side].add(level + owner)
            else:
                kept[owner].add(f"{side}:{level}")
    assert {f: int(n) for f, n in r.hgetall(k.depth).items() if int(n)} == depth
    assert {o: int(n) for o, n in r.zrange(k.owners_backlog, 0, -1, withscores=True)} == backlog
    for side in SIDES:
        assert set(r.zrange(k.ready(side), 0, -1)) == ready[side], side
    turns = {owner: set(entries.split()) for owner, entries in r.hgetall(k.owners_held_turns).items()}
    assert turns == kept, "a held owner's turns are kept for exactly the lists where it has work"
    running: dict[str, int] = {}
    for task_id in r.zrange(k.state_index(State.ACTIVE), 0, -1):
        owner = r.hget(k.task(task_id), "owner") or ""
        running[owner] = running.get(owner, 0) + 1
    assert {o: int(n) for o, n in r.hgetall(k.owners_active).items()} == running


def assert_gone(store: TaskStore, task_id: str) -> None:
    assert not store.r.exists(store.keys.task(task_id))
    assert not store.r.exists(store.keys.history(task_id)), "the audit trail goes with the task"
    assert places(store, task_id) == []
    assert indexes_holding(store, task_id) == []
    assert store.r.zscore(store.keys.all_tasks, task_id) is None
    assert type_indexes_holding(store, task_id) == {}, "no ghost in a type index"


def snapshot(store: TaskStore) -> dict[str, Any]:
    """Every key under this test's prefix with its full value, to prove a refusal changed nothing."""
    r, out = store.r, {}
    for key in r.scan_iter(match=f"{store.keys.prefix}*"):
        kind = r.type(key)
        if kind == "hash":
            out[key] = r.hgetall(key)
        elif kind == "list":
            out[key] = r.lrange(key, 0, -1)
        elif kind == "zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            out[key] = sorted(r.smembers(key))
        else:
            out[key] = r.get(key)
    return out
