"""Every Lua transition, allowed and refused, on fakeredis and on a real Redis.

State is driven only through the store; after each step the task is checked field by field and
the "exactly one place" invariant is asserted. A refusal must leave every key exactly as it was.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from core.errors import InvalidTransition, StaleAttempt, TaskNotFound
from core.keys import Keys
from core.states import State
from core.store import TaskStore, claimed_task, new_token
from tests.core.helpers import (
    CONSUMER,
    Stores,
    assert_gone,
    assert_one_place,
    assert_queues_consistent,
    claim_one,
    indexes_holding,
    make_in_state,
    new_task,
    places,
    queued,
    snapshot,
    stored_before_priorities,
    to_retry_list,
)

ALL_STATES = list(State)


# --- create ---------------------------------------------------------------------------------------
def test_create_stores_the_task_pending_at_the_tail_of_the_primary_list(store: TaskStore) -> None:
    first = store.create(new_task())
    task = store.create(new_task(max_retries=5))

    got = assert_one_place(store, task.id)
    assert got.state is State.PENDING
    assert (got.content, got.task_type, got.max_retries, got.retry_count) == ("some text", "summarize", 5, 0)
    assert got.created_at == got.updated_at == task.created_at > 0
    assert (got.started_at, got.finished_at, got.attempt) == (0, 0, "")
    assert queued(store.r, store.keys) == [first.id, task.id]
    assert store.r.zscore(store.keys.all_tasks, task.id) == task.created_at


def test_create_refuses_an_existing_id(store: TaskStore) -> None:
    task = store.create(new_task())
    before = snapshot(store)
    with pytest.raises(InvalidTransition):
        store.create(new_task(task_id=task.id))
    assert snapshot(store) == before


# --- claim ----------------------------------------------------------------------------------------
def test_claim_moves_the_task_to_the_consumers_inflight_list(store: TaskStore) -> None:
    task = store.create(new_task())
    claim = store.claim(CONSUMER, "tok-1", prefer_retry=False)

    assert (claim.status, claim.task_id) == ("ok", task.id)
    got = assert_one_place(store, task.id)
    assert got.state is State.ACTIVE
    assert (got.attempt, got.consumer) == ("tok-1", CONSUMER)
    assert got.started_at >= got.created_at and got.updated_at == got.started_at
    assert store.inflight_count(CONSUMER) == 1
    assert len(queued(store.r, store.keys)) == 0
    assert store.r.zscore(store.keys.state_index(State.ACTIVE), task.id) == got.started_at


def test_claim_returns_what_the_attempt_needs_of_the_task(store: TaskStore) -> None:
    task = store.create(new_task())
    claim = store.claim(CONSUMER, "tok-1", prefer_retry=False)
    stored = store.get(task.id)
    assert claim.fields == {"task_type": task.task_type, "content": task.content, "params": "", "retry_count": "0",
                            "max_retries": str(task.max_retries), "started_at": str(stored.started_at)}  # fmt: skip
    attempt = claimed_task(task.id, "tok-1", CONSUMER, claim.fields)
    for name in ("id", "task_type", "content", "state", "retry_count", "max_retries", "attempt", "consumer"):
        assert getattr(attempt, name) == getattr(stored, name), name


def test_a_claim_sent_twice_returns_the_task_it_took_the_first_time(store: TaskStore) -> None:
    """Its reply lost, the client sends the same claim (same token) again: the first run's task,
    counted and recorded once, stays in flight; the next task is left in the queue."""
    first, second = store.create(new_task()), store.create(new_task())
    claim = store.claim(CONSUMER, "tok-1", prefer_retry=False)
    history = store.history(first.id)
    again = store.claim(CONSUMER, "tok-1", prefer_retry=False)

    assert (again.status, again.task_id, again.source, again.fields) == ("ok", first.id, "again", claim.fields)
    got = assert_one_place(store, first.id)
    assert (got.state, got.attempt, got.attempts) == (State.ACTIVE, "tok-1", 1)
    assert store.history(first.id) == history, "no second transition"
    assert store.inflight_ids(CONSUMER) == [first.id]
    assert store.claim(CONSUMER, "tok-2", prefer_retry=False).task_id == second.id


def test_claim_is_fifo(store: TaskStore) -> None:
    ids = [store.create(new_task()).id for _ in range(5)]
    claimed = [store.claim(CONSUMER, new_token(), prefer_retry=False).task_id for _ in range(5)]
    assert claimed == ids
    assert store.r.lrange(store.keys.inflight(CONSUMER), 0, -1) == ids


def test_claim_on_empty_lists_reports_empty(store: TaskStore) -> None:
    for prefer_retry in (False, True):
        claim = store.claim(CONSUMER, new_token(), prefer_retry=prefer_retry)
        assert (claim.status, claim.task_id) == ("empty", "")
    assert store.inflight_count(CONSUMER) == 0


def test_claim_prefers_the_retry_list_and_falls_back_to_primary(store: TaskStore) -> None:
    retried, fresh = new_task(), new_task()
    to_retry_list(store, retried)
    store.create(fresh)

    first = store.claim(CONSUMER, new_token(), prefer_retry=True)
    assert (first.status, first.task_id, first.source) == ("ok", retried.id, "retry")
    second = store.claim(CONSUMER, new_token(), prefer_retry=True)
    assert (second.status, second.task_id, second.source) == ("ok", fresh.id, "primary")
    assert store.claim(CONSUMER, new_token(), prefer_retry=True).status == "empty"


def test_claim_prefers_primary_and_falls_back_to_the_retry_list(store: TaskStore) -> None:
    retried, fresh = new_task(), new_task()
    to_retry_list(store, retried)
    store.create(fresh)

    assert store.retry_backlog() == 1
    first = store.claim(CONSUMER, new_token(), prefer_retry=False)
    assert (first.status, first.task_id, first.source) == ("ok", fresh.id, "primary")
    assert store.retry_backlog() == 1
    second = store.claim(CONSUMER, new_token(), prefer_retry=False)
    assert (second.status, second.task_id, second.source) == ("ok", retried.id, "retry")
    assert store.retry_backlog() == 0
    assert store.claim(CONSUMER, new_token(), prefer_retry=False).status == "empty"


@pytest.mark.parametrize("withdraw", ["cancel", "delete"])
def test_a_withdrawn_task_leaves_its_list_and_is_never_claimed(stores: Stores, withdraw: str) -> None:
    store = stores.sync
    task, other = store.create(new_task()), store.create(new_task())
    stores.run(getattr(stores.aio, withdraw)(task.id))

    assert queued(store.r, store.keys) == [other.id]
    assert store.claim(CONSUMER, new_token(), prefer_retry=False).task_id == other.id
    assert store.claim(CONSUMER, new_token(), prefer_retry=False).status == "empty"
    if withdraw == "cancel":
        assert assert_one_place(store, task.id).state is State.CANCELLED
    else:
        assert_gone(store, task.id)
        assert_queues_consistent(store)


def test_claim_skips_a_queued_id_whose_task_is_gone(store: TaskStore) -> None:
    """Defensive path: an id whose hash vanished behind the scripts' back is dropped, not claimed."""
    task = store.create(new_task())
    store.r.delete(store.keys.task(task.id))
    claim = store.claim(CONSUMER, new_token(), prefer_retry=False)
    assert (claim.status, claim.task_id) == ("skip", task.id)
    assert store.inflight_count(CONSUMER) == 0
    assert queued(store.r, store.keys) == []
    assert store.claim(CONSUMER, new_token(), prefer_retry=False).status == "empty"


def test_wait_for_work_blocks_until_a_task_arrives(real_redis: redis.Redis, redis_url: str, key_prefix: str) -> None:
    """BLPOP on the wake-up marks really blocks only on a real server; woken, the consumer claims.
    An empty claim clears stale marks, so an idle consumer does not spin on them."""
    store = TaskStore(real_redis, Keys(key_prefix))
    assert store.claim(CONSUMER, "tok-0", prefer_retry=False).status == "empty"
    assert store.wait_for_work(0.05) is False

    task = new_task()
    producer = TaskStore(redis.Redis.from_url(redis_url, decode_responses=True), store.keys)
    timer = threading.Timer(0.1, producer.create, args=(task,))
    started = time.monotonic()
    timer.start()
    woken = store.wait_for_work(2.0)
    timer.join()
    producer.r.close()
    assert woken and 0.05 < time.monotonic() - started < 1.5
    assert store.claim(CONSUMER, "tok", prefer_retry=False).task_id == task.id
    assert assert_one_place(store, task.id).state is State.ACTIVE


# --- worker reports: complete, schedule_retry, fail -----------------------------------------------
def test_complete_stores_the_result(store: TaskStore) -> None:
    task = store.create(new_task())
    token = claim_one(store, task.id)
    store.complete(task.id, CONSUMER, token, "a summary", "offline")

    got = assert_one_place(store, task.id)
    assert got.state is State.COMPLETED
    assert (got.result, got.provider, got.attempt) == ("a summary", "offline", "")
    assert got.finished_at == got.updated_at >= got.started_at > 0
    assert store.inflight_count(CONSUMER) == 0


def test_complete_after_failed_attempts_drops_their_error_and_run_of_429s(store: TaskStore) -> None:
    """The task no longer carries an earlier attempt's error (its history keeps it)."""
    task = store.create(new_task())
    store.schedule_retry(task.id, CONSUMER, claim_one(store, task.id), 0, "429", "rate_limited", streak="grow")
    assert store.rate_limit_streak(task.id)[0] == 1
    store.promote_due(10)
    token = new_token()
    assert store.claim(CONSUMER, token, prefer_retry=True).task_id == task.id
    store.complete(task.id, CONSUMER, token, "a summary", "offline")

    got = assert_one_place(store, task.id)
    assert (got.state, got.last_error, got.error_type) == (State.COMPLETED, "", "")
    assert store.rate_limit_streak(task.id) == (0, 0)
    assert not store.r.hexists(store.keys.task(task.id), "last_error")
    assert [e.get("error") for e in store.history(task.id)][2] == "429"


def test_schedule_retry_spends_a_retry_and_waits_until_due(store: TaskStore) -> None:
    task = store.create(new_task())
    token = claim_one(store, task.id)
    assert store.schedule_retry(task.id, CONSUMER, token, 12.5, "timed out", "transient") == 1

    got = assert_one_place(store, task.id)
    assert got.state is State.SCHEDULED
    assert (got.retry_count, got.last_error, got.error_type, got.attempt) == (1, "timed out", "transient", "")
    assert got.due_at == got.updated_at + 12_500
    assert store.r.zscore(store.keys.scheduled, task.id) == got.due_at
    assert store.inflight_count(CONSUMER) == 0


def test_a_rate_limited_attempt_waits_without_spending_a_retry(store: TaskStore) -> None:
    task = store.create(new_task())
    token = claim_one(store, task.id)
    assert store.schedule_retry(task.id, CONSUMER, token, 2, "429", "rate_limited", spend=False) == 0

    got = assert_one_place(store, task.id)
    assert (got.state, got.retry_count, got.due_at) == (State.SCHEDULED, 0, got.updated_at + 2000)
    assert store.r.hget(store.keys.counters, "postponed") == "1"
    assert store.r.hget(store.keys.counters, "retried") is None


@pytest.mark.parametrize("target", [State.FAILED, State.DLQ])
def test_fail_ends_the_task(store: TaskStore, target: State) -> None:
    task = store.create(new_task())
    token = claim_one(store, task.id)
    store.fail(task.id, CONSUMER, token, target, "refused", "input_rejected")

    got = assert_one_place(store, task.id)
    assert got.state is target
    assert (got.last_error, got.error_type, got.attempt) == ("refused", "input_rejected", "")
    assert got.finished_at == got.updated_at > 0
    assert store.inflight_count(CONSUMER) == 0


def test_release_puts_the_task_back_at_the_head_of_the_queue_without_spending_a_retry(store: TaskStore) -> None:
    """The breaker was open: the attempt never reached the provider, so the task waits in its place."""
    first, second = store.create(new_task()), store.create(new_task())
    token = claim_one(store, first.id)
    store.release(first.id, CONSUMER, token, "circuit breaker open", "circuit_open")

    got = assert_one_place(store, first.id)
    assert (got.state, got.retry_count, got.error_type, got.attempt) == (State.PENDING, 0, "circuit_open", "")
    assert queued(store.r, store.keys) == [first.id, second.id]
    assert store.inflight_count(CONSUMER) == 0


REPORTS: dict[str, Callable[[TaskStore, str, str], object]] = {
    "release": lambda s, tid, tok: s.release(tid, CONSUMER, tok, "late", "shutdown"),
    "complete": lambda s, tid, tok: s.complete(tid, CONSUMER, tok, "late", "offline"),
    "schedule_retry": lambda s, tid, tok: s.schedule_retry(tid, CONSUMER, tok, 1, "late", "transient"),
    "fail": lambda s, tid, tok: s.fail(tid, CONSUMER, tok, State.DLQ, "late", "transient"),
}


@pytest.mark.parametrize("report", REPORTS)
def test_report_with_a_wrong_token_is_refused(store: TaskStore, report: str) -> None:
    task = store.create(new_task())
    claim_one(store, task.id)
    before = snapshot(store)
    with pytest.raises(StaleAttempt):
        REPORTS[report](store, task.id, "not-the-token")
    assert snapshot(store) == before


@pytest.mark.parametrize("report", REPORTS)
def test_report_of_an_older_attempt_is_refused(store: TaskStore, report: str) -> None:
    """The first attempt was reaped and the task claimed again: the first worker's late report loses."""
    task = store.create(new_task())
    old = claim_one(store, task.id)
    assert store.recover(task.id, CONSUMER, old, "lease expired") == "requeued"
    assert store.claim("c2", "new-token", prefer_retry=True).task_id == task.id
    before = snapshot(store)
    with pytest.raises(StaleAttempt):
        REPORTS[report](store, task.id, old)
    assert snapshot(store) == before
    assert store.get(task.id).attempt == "new-token"


@pytest.mark.parametrize("report", REPORTS)
def test_report_after_the_attempt_finished_is_refused(store: TaskStore, report: str) -> None:
    """A duplicate delivery of an attempt that already completed cannot rewrite it."""
    task = store.create(new_task())
    token = claim_one(store, task.id)
    store.complete(task.id, CONSUMER, token, "first", "offline")
    before = snapshot(store)
    with pytest.raises(StaleAttempt):
        REPORTS[report](store, task.id, token)
    assert snapshot(store) == before


@pytest.mark.parametrize("report", REPORTS)
def test_report_for_an_unknown_task_is_not_found(store: TaskStore, report: str) -> None:
    with pytest.raises(TaskNotFound):
        REPORTS[report](store, "no-such-task", "tok")
    assert snapshot(store) == {}


# --- promote_due ----------------------------------------------------------------------------------
def _scheduled(store: TaskStore, delay: float) -> str:
    task = store.create(new_task())
    token = claim_one(store, task.id)
    store.schedule_retry(task.id, CONSUMER, token, delay, "boom", "transient")
    return task.id


def test_promote_due_moves_only_due_tasks(store: TaskStore) -> None:
    due, later = _scheduled(store, 0), _scheduled(store, 3600)
    assert store.promote_due(100) == 1

    got = assert_one_place(store, due)
    assert (got.state, got.due_at, got.retry_count) == (State.PENDING, 0, 1)
    assert queued(store.r, store.keys, "retry") == [due]
    assert assert_one_place(store, later).state is State.SCHEDULED
    assert store.promote_due(100) == 0


def test_promote_due_respects_the_batch_size_and_due_order(store: TaskStore) -> None:
    """Due times already past and distinct (a negative delay), scheduled out of due order."""
    ids = [_scheduled(store, delay) for delay in (-1, -3, -2)]
    assert store.promote_due(2) == 2
    assert queued(store.r, store.keys, "retry") == [ids[1], ids[2]]
    assert store.r.zrange(store.keys.scheduled, 0, -1) == [ids[0]]
    assert store.promote_due(2) == 1
    assert queued(store.r, store.keys, "retry") == [ids[1], ids[2], ids[0]]
    for task_id in ids:
        assert assert_one_place(store, task_id).state is State.PENDING


def test_promote_due_drops_ids_no_longer_scheduled(store: TaskStore) -> None:
    """Defensive path: a due entry whose task is gone or has moved on is removed, not promoted."""
    task = store.create(new_task())
    store.complete(task.id, CONSUMER, claim_one(store, task.id), "done", "offline")
    store.r.zadd(store.keys.scheduled, {"ghost": 0, task.id: 0})
    before = store.r.hgetall(store.keys.task(task.id))

    assert store.promote_due(100) == 0
    assert store.r.zcard(store.keys.scheduled) == 0
    assert len(queued(store.r, store.keys, "retry")) == 0
    assert store.r.hgetall(store.keys.task(task.id)) == before


# --- recover --------------------------------------------------------------------------------------
def test_recover_of_an_id_an_old_consumer_moved_but_never_claimed_spends_no_retry(store: TaskStore) -> None:
    task_id = stored_before_priorities(store, store.keys.inflight(CONSUMER))
    assert store.recover(task_id, CONSUMER, "", "consumer stopped") == "requeued"

    got = assert_one_place(store, task_id)
    assert (got.state, got.retry_count, got.error_type, got.priority) == (State.PENDING, 0, "", 5)
    assert queued(store.r, store.keys, "retry") == [task_id]
    assert store.inflight_count(CONSUMER) == 0


def test_recover_of_an_active_task_requeues_it_as_a_spent_retry(store: TaskStore) -> None:
    task = store.create(new_task())
    token = claim_one(store, task.id)
    assert store.recover(task.id, CONSUMER, token, "worker died") == "requeued"

    got = assert_one_place(store, task.id)
    assert got.state is State.PENDING
    assert (got.retry_count, got.error_type, got.last_error, got.attempt) == (1, "worker_lost", "worker died", "")
    assert queued(store.r, store.keys, "retry") == [task.id]
    assert store.inflight_count(CONSUMER) == 0


def test_recover_out_of_retries_goes_to_the_dlq(store: TaskStore) -> None:
    task = store.create(new_task(max_retries=1))
    assert store.recover(task.id, CONSUMER, claim_one(store, task.id), "died") == "requeued"
    token = new_token()
    assert store.claim(CONSUMER, token, prefer_retry=True).task_id == task.id
    assert store.recover(task.id, CONSUMER, token, "died again") == "dead"

    got = assert_one_place(store, task.id)
    assert got.state is State.DLQ
    assert (got.retry_count, got.error_type, got.last_error, got.attempt) == (1, "worker_lost", "died again", "")
    assert got.finished_at > 0
    assert store.inflight_count(CONSUMER) == 0


def test_recover_with_a_token_that_no_longer_matches_is_stale(store: TaskStore) -> None:
    task = store.create(new_task())
    claim_one(store, task.id)
    before = snapshot(store)
    assert store.recover(task.id, CONSUMER, "old-token", "lease expired") == "stale"
    assert snapshot(store) == before


def test_recover_leaves_a_task_another_consumer_holds(store: TaskStore) -> None:
    task = store.create(new_task())
    claim_one(store, task.id, consumer="c2")
    assert store.recover(task.id, CONSUMER, "", "c1 stopped") == "dropped"
    got = assert_one_place(store, task.id)
    assert (got.state, got.consumer, got.retry_count) == (State.ACTIVE, "c2", 0)


@pytest.mark.parametrize("claimed", [True, False], ids=["active", "moved by an old consumer"])
def test_recover_twice_requeues_once(store: TaskStore, claimed: bool) -> None:
    """Two reapers both read the dead consumer's in-flight list, then both recover the same id:
    the second call finds nothing to recover and must not push a duplicate."""
    if claimed:
        task_id = store.create(new_task()).id
        claim_one(store, task_id)
    else:
        task_id = stored_before_priorities(store, store.keys.inflight(CONSUMER))
    assert store.recover(task_id, CONSUMER, "", "consumer stopped") == "requeued"
    before = snapshot(store)
    assert store.recover(task_id, CONSUMER, "", "consumer stopped") == "dropped"
    assert snapshot(store) == before
    assert queued(store.r, store.keys, "retry") == [task_id]
    assert assert_one_place(store, task_id).retry_count == int(claimed)


def test_recover_of_a_deleted_task_only_drops_the_id(stores: Stores) -> None:
    store = stores.sync
    task_id = stored_before_priorities(store, store.keys.inflight(CONSUMER))
    stores.run(stores.aio.delete(task_id))
    assert store.recover(task_id, CONSUMER, "", "consumer stopped") == "dropped"
    assert store.inflight_count(CONSUMER) == 0
    assert_gone(store, task_id)


# --- recover_orphans ------------------------------------------------------------------------------
def test_recover_orphans_returns_the_tasks_of_a_dead_consumer_only(store: TaskStore) -> None:
    store.beat("dead", {"pid": 1}, ttl=0.2)
    store.beat("alive", {"pid": 2}, ttl=30)
    orphans = [store.create(new_task()).id for _ in range(2)]
    for task_id in orphans:
        claim_one(store, task_id, consumer="dead")
    kept = store.create(new_task()).id
    claim_one(store, kept, consumer="alive")
    time.sleep(0.3)

    assert store.recover_orphans(lease_seconds=3600, batch=100) == 2
    assert queued(store.r, store.keys, "retry") == orphans
    for task_id in orphans:
        got = assert_one_place(store, task_id)
        assert (got.state, got.retry_count, got.error_type) == (State.PENDING, 1, "worker_lost")
    assert assert_one_place(store, kept).state is State.ACTIVE
    assert store.r.smembers(store.keys.consumers) == {"alive"}
    assert store.recover_orphans(lease_seconds=3600, batch=100) == 0


def test_recover_orphans_returns_an_unclaimed_id_of_a_dead_consumer(store: TaskStore) -> None:
    store.beat("dead", {}, ttl=0.1)
    task_id = stored_before_priorities(store, store.keys.inflight("dead"))
    time.sleep(0.2)
    assert store.recover_orphans(lease_seconds=3600, batch=100) == 1
    got = assert_one_place(store, task_id)
    assert (got.state, got.retry_count) == (State.PENDING, 0)


def test_recover_orphans_returns_the_tasks_of_a_consumer_that_left(store: TaskStore) -> None:
    store.beat(CONSUMER, {}, ttl=30)
    task = store.create(new_task())
    claim_one(store, task.id)
    store.leave(CONSUMER)
    assert store.recover_orphans(lease_seconds=3600, batch=100) == 1
    assert assert_one_place(store, task.id).state is State.PENDING


def test_recover_orphans_takes_back_a_task_past_its_lease(store: TaskStore) -> None:
    store.beat(CONSUMER, {}, ttl=30)
    task = store.create(new_task())
    token = claim_one(store, task.id)
    time.sleep(0.02)

    assert store.recover_orphans(lease_seconds=0, batch=100) == 1
    got = assert_one_place(store, task.id)
    assert (got.state, got.retry_count, got.error_type) == (State.PENDING, 1, "worker_lost")
    before = snapshot(store)
    with pytest.raises(StaleAttempt):
        store.complete(task.id, CONSUMER, token, "too late", "offline")
    assert snapshot(store) == before


def test_recover_orphans_with_a_long_lease_leaves_running_tasks(store: TaskStore) -> None:
    store.beat(CONSUMER, {}, ttl=30)
    task = store.create(new_task())
    claim_one(store, task.id)
    assert store.recover_orphans(lease_seconds=3600, batch=100) == 0
    assert assert_one_place(store, task.id).state is State.ACTIVE


# --- operator transitions: retry, cancel, delete --------------------------------------------------
@pytest.mark.parametrize("state", [State.FAILED, State.DLQ, State.CANCELLED])
def test_retry_re_drives_a_finished_task(stores: Stores, state: State) -> None:
    store = stores.sync
    task = make_in_state(stores, state)
    assert stores.run(stores.aio.retry(task.id)) is state

    got = assert_one_place(store, task.id)
    assert (got.state, got.retry_count, got.finished_at, got.attempt) == (State.PENDING, 0, 0, "")
    assert queued(store.r, store.keys, "retry") == [task.id]
    assert store.claim(CONSUMER, new_token(), prefer_retry=False).task_id == task.id


def test_retry_renews_the_retry_budget(stores: Stores) -> None:
    store = stores.sync
    task = store.create(new_task(max_retries=0))
    assert store.recover(task.id, CONSUMER, claim_one(store, task.id), "died") == "dead"
    stores.run(stores.aio.retry(task.id))
    assert assert_one_place(store, task.id).retry_count == 0


@pytest.mark.parametrize("state", [State.PENDING, State.ACTIVE, State.COMPLETED, State.SCHEDULED])
def test_retry_is_refused_unless_finished_unsuccessfully(stores: Stores, state: State) -> None:
    task = make_in_state(stores, state)
    before = snapshot(stores.sync)
    with pytest.raises(InvalidTransition) as err:
        stores.run(stores.aio.retry(task.id))
    assert err.value.state == state.value
    assert snapshot(stores.sync) == before


def test_cancel_withdraws_a_pending_task(stores: Stores) -> None:
    store = stores.sync
    task = store.create(new_task())
    assert stores.run(stores.aio.cancel(task.id)) is State.PENDING

    got = assert_one_place(store, task.id)
    assert (got.state, got.due_at) == (State.CANCELLED, 0)
    assert got.finished_at == got.updated_at > 0
    assert len(queued(store.r, store.keys)) == 0


def test_cancel_withdraws_a_task_from_the_retry_list(stores: Stores) -> None:
    store = stores.sync
    task = new_task()
    to_retry_list(store, task)
    assert stores.run(stores.aio.cancel(task.id)) is State.PENDING
    assert assert_one_place(store, task.id).state is State.CANCELLED
    assert len(queued(store.r, store.keys, "retry")) == 0


def test_cancel_withdraws_a_scheduled_task(stores: Stores) -> None:
    store = stores.sync
    task = make_in_state(stores, State.SCHEDULED)
    assert stores.run(stores.aio.cancel(task.id)) is State.SCHEDULED

    got = assert_one_place(store, task.id)
    assert (got.state, got.due_at) == (State.CANCELLED, 0)
    assert store.r.zcard(store.keys.scheduled) == 0
    assert store.promote_due(100) == 0


@pytest.mark.parametrize("report", REPORTS)
def test_cancel_stops_an_active_task_and_refuses_its_late_report(stores: Stores, report: str) -> None:
    """CANCELLED at once; the id leaves the consumer's in-flight list in the same step (so the
    consumer's count stays right), and the worker's late report is refused as stale."""
    store = stores.sync
    task = store.create(new_task())
    other = store.create(new_task())
    token = claim_one(store, task.id)
    claim_one(store, other.id)
    assert stores.run(stores.aio.cancel(task.id)) is State.ACTIVE

    got = assert_one_place(store, task.id)
    assert (got.state, got.attempt) == (State.CANCELLED, "")
    assert got.finished_at == got.updated_at > 0
    assert store.inflight_ids(CONSUMER) == [other.id]
    before = snapshot(store)
    with pytest.raises(StaleAttempt):
        REPORTS[report](store, task.id, token)
    assert snapshot(store) == before


@pytest.mark.parametrize("state", [State.COMPLETED, State.FAILED, State.DLQ, State.CANCELLED])
def test_cancel_is_refused_once_finished(stores: Stores, state: State) -> None:
    task = make_in_state(stores, state)
    before = snapshot(stores.sync)
    with pytest.raises(InvalidTransition) as err:
        stores.run(stores.aio.cancel(task.id))
    assert err.value.state == state.value
    assert snapshot(stores.sync) == before


@pytest.mark.parametrize("state", [s for s in ALL_STATES if s is not State.ACTIVE])
def test_delete_removes_every_trace(stores: Stores, state: State) -> None:
    task = make_in_state(stores, state)
    stores.run(stores.aio.delete(task.id))
    assert_gone(stores.sync, task.id)


def test_delete_of_a_running_task_is_refused(stores: Stores) -> None:
    task = make_in_state(stores, State.ACTIVE)
    before = snapshot(stores.sync)
    with pytest.raises(InvalidTransition):
        stores.run(stores.aio.delete(task.id))
    assert snapshot(stores.sync) == before


@pytest.mark.parametrize("action", ["retry", "cancel", "delete", "get"])
def test_operator_actions_on_an_unknown_id_are_not_found(stores: Stores, action: str) -> None:
    with pytest.raises(TaskNotFound):
        stores.run(getattr(stores.aio, action)("no-such-task"))
    with pytest.raises(TaskNotFound):
        stores.sync.get("no-such-task")


# --- purge ----------------------------------------------------------------------------------------
def test_purge_deletes_finished_tasks_past_retention(store: TaskStore) -> None:
    old = make_done(store)
    time.sleep(0.4)
    fresh = make_done(store)

    assert store.purge(State.COMPLETED, retention_ms=200, max_keep=None, batch=100) == 1
    assert_gone(store, old)
    assert assert_one_place(store, fresh).state is State.COMPLETED
    assert store.purge(State.COMPLETED, retention_ms=0, max_keep=None, batch=100) == 0


def test_purge_bounds_the_dlq_oldest_first(store: TaskStore) -> None:
    ids = []
    for n in range(5):
        task = store.create(new_task(task_id=f"dead-{n}"))
        store.fail(task.id, CONSUMER, claim_one(store, task.id), State.DLQ, "x", "provider_problem")
        ids.append(task.id)

    assert store.purge(State.DLQ, retention_ms=0, max_keep=None, batch=100) == 0
    assert store.purge(State.DLQ, retention_ms=0, max_keep=4, batch=100) == 1
    assert store.purge(State.DLQ, retention_ms=3_600_000, max_keep=2, batch=1) == 1
    assert store.purge(State.DLQ, retention_ms=3_600_000, max_keep=2, batch=100) == 1
    assert store.purge(State.DLQ, retention_ms=3_600_000, max_keep=2, batch=100) == 0
    for task_id in ids[:3]:
        assert_gone(store, task_id)
    assert store.r.zrange(store.keys.dlq, 0, -1) == ids[3:]
    for task_id in ids[3:]:
        assert assert_one_place(store, task_id).state is State.DLQ


def test_purge_deletes_every_key_of_the_task_and_nothing_else(store: TaskStore) -> None:
    owned = new_task(task_type="translate")
    owned.owner = "key-a"
    store.create(owned)
    token = claim_one(store, owned.id)
    store.save_chunk(owned.id, token, "0", '"piece"', 60_000)
    store.schedule_retry(owned.id, CONSUMER, token, 0, "boom", "transient")
    store.promote_due(10)
    store.complete(owned.id, CONSUMER, claim_one(store, owned.id), "done", "offline")
    kept = make_done(store)
    k = store.keys
    assert store.r.exists(k.history(owned.id), k.task_chunks(owned.id)) == 2

    assert store.purge(State.COMPLETED, retention_ms=0, max_keep=1, batch=100) == 1
    assert_gone(store, owned.id)
    assert not store.r.exists(k.task_chunks(owned.id))
    assert store.r.zscore(k.owner_tasks("key-a"), owned.id) is None
    assert not store.r.exists(k.owner_tasks("")), "owner '' has no index: its stand-in key is never written"
    assert assert_one_place(store, kept).state is State.COMPLETED
    assert store.r.hget(k.counters, "expired") == "1"


def test_purge_skips_a_candidate_that_changed_after_it_was_read(store: TaskStore) -> None:
    """The script is given what Python read; what no longer holds when it runs is left alone."""
    moved_on, recreated, fresh = make_done(store), make_done(store), make_done(store)
    store.r.zrem(store.keys.state_index(State.COMPLETED), moved_on)  # as if retried meanwhile
    store.r.hset(store.keys.task(recreated), "owner", "another-key")  # deleted, then the id reused
    now = store.r.time()
    store.r.zadd(store.keys.state_index(State.COMPLETED), {fresh: now[0] * 1000})  # finished again
    read = [(task_id, "", "summarize") for task_id in (moved_on, recreated, fresh)]

    assert store._run(store.ops.purge(State.COMPLETED, 3_600_000, None, read)) == 0
    for task_id in (moved_on, recreated, fresh):
        assert store.r.exists(store.keys.task(task_id), store.keys.history(task_id)) >= 1
    assert store.r.hget(store.keys.counters, "expired") is None
    assert store._run(store.ops.purge(State.COMPLETED, 0, 0, read)) == 1, "beyond the bound, as read"
    assert_gone(store, fresh)


def test_purge_rechecks_the_bound_when_it_runs(store: TaskStore) -> None:
    oldest, newer = make_done(store), make_done(store)
    read = [(oldest, "", "summarize"), (newer, "", "summarize")]
    store.r.zrem(store.keys.state_index(State.COMPLETED), oldest)  # one left: within a bound of 1
    assert store._run(store.ops.purge(State.COMPLETED, 0, 1, read)) == 0
    assert assert_one_place(store, newer).state is State.COMPLETED


def test_purge_clears_an_index_entry_whose_hash_is_gone(store: TaskStore) -> None:
    """Skipped, it would head the index for ever and hold every purge up."""
    orphan = make_done(store)
    store.r.delete(store.keys.task(orphan))
    assert store.purge(State.COMPLETED, retention_ms=0, max_keep=0, batch=10) == 1
    assert indexes_holding(store, orphan) == [] and store.r.zscore(store.keys.all_tasks, orphan) is None
    assert not store.r.exists(store.keys.history(orphan))


def make_done(store: TaskStore) -> str:
    task = store.create(new_task())
    store.complete(task.id, CONSUMER, claim_one(store, task.id), "done", "offline")
    return task.id


# --- reads: page, depths, state_counts ------------------------------------------------------------
def _walk(stores: Stores, state: State | None, limit: int) -> list[str]:
    seen, cursor, pages = [], None, 0
    while True:
        page = stores.run(stores.aio.page(state, limit, cursor))
        assert len(page.ids) <= limit
        seen += page.ids
        pages += 1
        if page.cursor is None:
            return seen
        assert pages < 100, "pagination does not terminate"
        cursor = page.cursor


def test_page_walks_every_task_once_newest_first(stores: Stores) -> None:
    store = stores.sync
    ids = []
    for _ in range(11):
        ids.append(store.create(new_task()).id)
        time.sleep(0.002)
    seen = _walk(stores, None, 4)
    assert seen == list(reversed(ids))
    assert stores.run(stores.aio.page(None, 11, None)).cursor is None
    assert _walk(stores, State.PENDING, 3) == list(reversed(ids))
    assert _walk(stores, State.ACTIVE, 3) == []


def test_page_breaks_ties_on_the_score_without_skipping_or_repeating(stores: Stores) -> None:
    """Many tasks created in the same millisecond: the page boundary falls inside the tie."""
    store = stores.sync
    index = store.keys.all_tasks
    store.r.zadd(index, {f"a{n:02d}": 1000 for n in range(10)})
    store.r.zadd(index, {"new": 2000, "old": 500, "b": 1000.0})
    expected = ["new", "b", *[f"a{n:02d}" for n in reversed(range(10))], "old"]
    for limit in (1, 2, 3, 5, 12, 13, 50):
        assert _walk(stores, None, limit) == expected, f"limit {limit}"


def test_depths_and_state_counts_match_the_structures(stores: Stores) -> None:
    store = stores.sync
    to_retry_list(store, new_task())
    scheduled = make_in_state(stores, State.SCHEDULED)
    dead = make_in_state(stores, State.DLQ)
    for state in (State.COMPLETED, State.FAILED, State.CANCELLED):
        make_in_state(stores, state)
    pending = [make_in_state(stores, State.PENDING) for _ in range(3)]
    claim_one(store, pending[0].id)

    assert stores.run(stores.aio.depths()) == {"primary": 2, "retry": 1, "scheduled": 1, "dlq": 1}
    counts = stores.run(stores.aio.state_counts())
    assert counts == {
        "PENDING": 3,
        "ACTIVE": 1,
        "SCHEDULED": 1,
        "COMPLETED": 1,
        "FAILED": 1,
        "DLQ": 1,
        "CANCELLED": 1,
    }
    assert [t.id for t in stores.run(stores.aio.get_many([scheduled.id, "gone", dead.id]))] == [
        scheduled.id,
        dead.id,
    ]


def test_a_sides_depth_is_the_sum_of_its_levels(stores: Stores) -> None:
    """The per-side fields an older version kept are neither kept nor read: the levels add up."""
    store = stores.sync
    stores.sync.r.hset(store.keys.depth, mapping={"primary": 99, "retry": 7})  # left by an older version
    to_retry_list(store, new_task())
    for _ in range(2):
        store.create(new_task())
    depths = stores.run(stores.aio.depths())
    assert (depths["primary"], depths["retry"]) == (2, 1)
    assert store.r.hmget(store.keys.depth, ["primary", "retry"]) == ["99", "7"]
    assert store.retry_backlog() == 1


# --- events ---------------------------------------------------------------------------------------
def test_each_transition_publishes_one_event(real_redis: redis.Redis, key_prefix: str) -> None:
    store = TaskStore(real_redis, Keys(key_prefix))
    pubsub = real_redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.keys.events)
    assert pubsub.get_message(timeout=0.5) is None  # consumes the subscribe confirmation

    task = store.create(new_task())
    store.complete(task.id, CONSUMER, claim_one(store, task.id), "done", "offline")

    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 2
    while len(events) < 3 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message:
            events.append(json.loads(message["data"]))
    pubsub.close()
    assert [(e["task_id"], e["from"], e["to"]) for e in events] == [
        (task.id, "", "PENDING"),
        (task.id, "PENDING", "ACTIVE"),
        (task.id, "ACTIVE", "COMPLETED"),
    ]
    assert all(e["at"] > 0 and e["event"] == "transition" for e in events)
    assert [e["counters"] for e in events] == [{"submitted": 1}, {"started": 1, "taken_primary": 1}, {"completed": 1}]
    assert [e.get("worker") for e in events] == [None, CONSUMER, CONSUMER]
    assert places(store, task.id) == ["COMPLETED"]


def test_an_error_with_what_json_escapes_reads_back_as_it_was(stores: Stores) -> None:
    """The scripts write history entries and events as JSON text of their own (no cjson table):
    an error message with quotes, backslashes, control characters and non-ASCII, and an error
    type with a quote, read back exactly (the message cut at 500 bytes)."""
    store = stores.sync
    pubsub = store.r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.keys.events)
    assert pubsub.get_message(timeout=0.5) is None  # the subscribe confirmation
    error = 'provider said "no" \\ twice\n\tthen \x01 stopped: café 東京 ' + "x" * 600
    error_type = 'odd"type'
    task = store.create(new_task())
    store.fail(task.id, CONSUMER, claim_one(store, task.id), State.FAILED, error, error_type)

    last = json.loads(store.r.lrange(store.keys.history(task.id), -1, -1)[0])
    assert last == {"at": last["at"], "from": "ACTIVE", "to": "FAILED", "worker": CONSUMER,
                    "error": error.encode()[:500].decode(), "error_type": error_type}  # fmt: skip
    assert isinstance(last["at"], int) and last["at"] > 0
    events = []
    while (message := pubsub.get_message(timeout=2)) is not None:
        events.append(json.loads(message["data"]))
    pubsub.close()
    assert events[-1] == {"event": "transition", "task_id": task.id, "from": "ACTIVE", "to": "FAILED",
                          "at": last["at"], "worker": CONSUMER, "error_type": error_type,
                          "counters": {"failed": 1}}  # fmt: skip
