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


def move_to_inflight(store: TaskStore, consumer: str) -> str:
    """What the consumer's blocking wait does: the next new id moves into its in-flight list, unclaimed.

    fakeredis does not block, so there the same move is made with the non-blocking LMOVE.
    """
    if is_fake(store):
        moved = store.r.lmove(store.keys.pending_primary, store.keys.inflight(consumer), "LEFT", "RIGHT")
    else:
        moved = store.wait_for_new(consumer, 0.1)
    assert moved
    return str(moved)


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
    found = ["primary"] * r.lrange(k.pending_primary, 0, -1).count(task_id)
    found += ["retry"] * r.lrange(k.pending_retry, 0, -1).count(task_id)
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
    prefix, found = store.keys.type_prefix, {}
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
    return task


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
