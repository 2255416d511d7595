"""Per task type: the type index (kept by create, delete, purge), the per-type counters (moved in
the same scripts as the global ones) and listings by type, on fakeredis and on a real Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest

import core.store
from core.states import State
from core.store import TaskStore
from core.task import Task
from tests.core.helpers import (
    CONSUMER,
    Stores,
    assert_gone,
    assert_one_place,
    claim_one,
    make_in_state,
    new_task,
    snapshot,
    type_indexes_holding,
)

# Type names are opaque to core/: any registered name works, these are not the built-in ones.
A, B = "alpha", "beta"
# The counters the scripts keep per type (api/metrics.py TYPE_EVENTS; tests/api holds them equal).
PER_TYPE = ("submitted", "completed", "failed", "dead", "retried", "postponed", "recovered")


def by_type(store: TaskStore) -> dict[str, dict[str, int]]:
    store.fold_tally()  # as the scheduler does: completions reach their type's counter
    raw = store.r.hgetall(store.keys.type_counters)
    out: dict[str, dict[str, int]] = {}
    for name, value in raw.items():
        task_type, _, counter = name.rpartition(":")
        out.setdefault(task_type, {})[counter] = int(value)
    return out


def create(store: TaskStore, task_type: str) -> Task:
    return store.create(new_task(task_type=task_type))


def create_apart(store: TaskStore, task_type: str) -> Task:
    """A task created in a millisecond of its own, so creation order is the index's order."""
    time.sleep(0.002)
    return create(store, task_type)


# --- the type index -------------------------------------------------------------------------------
def test_create_adds_each_task_to_its_types_index_at_its_creation_time(stores: Stores) -> None:
    store = stores.sync
    first, second = create(store, A), create(store, B)
    mixed = [new_task(task_type=t) for t in (A, B, A)]
    stores.run(stores.aio.create_many(mixed))

    for task in (first, second, *mixed):
        assert type_indexes_holding(store, task.id) == {task.task_type: store.get(task.id).created_at}
    assert store.r.zcard(store.keys.type_tasks(A)) == 3 and store.r.zcard(store.keys.type_tasks(B)) == 2


def test_a_task_without_a_type_is_in_no_type_index_and_counted_globally_only(store: TaskStore) -> None:
    task = store.create(new_task(task_type=""))
    assert type_indexes_holding(store, task.id) == {}
    assert by_type(store) == {}
    assert store.r.hget(store.keys.counters, "submitted") == "1"


@pytest.mark.parametrize("state", [s for s in State if s is not State.ACTIVE])
def test_delete_takes_the_task_out_of_its_types_index(stores: Stores, state: State) -> None:
    task = make_in_state(stores, state, task_type=A)
    kept = create(stores.sync, A)

    stores.run(stores.aio.delete(task.id))

    assert_gone(stores.sync, task.id)
    assert stores.sync.r.zrange(stores.sync.keys.type_tasks(A), 0, -1) == [kept.id], "the other task stays"


def test_purge_takes_each_task_out_of_its_types_index(store: TaskStore) -> None:
    ids = {}
    for task_type in (A, B, A, B):
        task = create(store, task_type)
        store.complete(task.id, CONSUMER, claim_one(store, task.id), "done", "offline")
        ids[task.id] = task_type
        time.sleep(0.002)
    live = create(store, A)

    assert store.purge(State.COMPLETED, retention_ms=0, max_keep=1, batch=100) == 3

    *gone, newest = list(ids)
    for task_id in gone:
        assert_gone(store, task_id)
    assert assert_one_place(store, newest).task_type == B
    assert store.r.zrange(store.keys.type_tasks(A), 0, -1) == [live.id]
    assert store.r.zrange(store.keys.type_tasks(B), 0, -1) == [newest]


def test_a_refused_delete_leaves_the_type_index_alone(stores: Stores) -> None:
    task = create(stores.sync, A)
    claim_one(stores.sync, task.id)
    before = snapshot(stores.sync)
    with pytest.raises(Exception, match="ACTIVE"):
        stores.run(stores.aio.delete(task.id))
    assert snapshot(stores.sync) == before


# --- the per-type counters ------------------------------------------------------------------------
def drive_every_counted_transition(store: TaskStore, task_type: str) -> None:
    """One of each transition counted per type, for tasks of `task_type` (two completed)."""
    for _ in range(2):
        task = create(store, task_type)
        store.complete(task.id, CONSUMER, claim_one(store, task.id), "done", "offline")
    failed, dead, retried, postponed = (create(store, task_type) for _ in range(4))
    store.fail(failed.id, CONSUMER, claim_one(store, failed.id), State.FAILED, "no", "input_rejected")
    store.fail(dead.id, CONSUMER, claim_one(store, dead.id), State.DLQ, "no", "provider_problem")
    store.schedule_retry(retried.id, CONSUMER, claim_one(store, retried.id), 3600, "boom", "transient")
    store.schedule_retry(postponed.id, CONSUMER, claim_one(store, postponed.id), 3600, "429", "rate_limited", False)
    lost, lost_dead = create(store, task_type), store.create(new_task(max_retries=0, task_type=task_type))
    for task in (lost, lost_dead):
        token = claim_one(store, task.id)
        assert store.recover(task.id, CONSUMER, token, "worker lost") == ("requeued" if task is lost else "dead")


def test_each_counted_transition_moves_its_types_counter(store: TaskStore) -> None:
    drive_every_counted_transition(store, A)
    create(store, B)

    expected_a = {"submitted": 8, "completed": 2, "failed": 1, "dead": 2, "retried": 1, "postponed": 1, "recovered": 1}
    assert by_type(store) == {A: expected_a, B: {"submitted": 1}}


def test_the_types_counters_add_up_to_the_global_ones(store: TaskStore) -> None:
    drive_every_counted_transition(store, A)
    drive_every_counted_transition(store, B)
    drive_every_counted_transition(store, A)

    counts = by_type(store)
    totals = {name: int(value) for name, value in store.r.hgetall(store.keys.counters).items()}
    assert {name for figures in counts.values() for name in figures} == set(PER_TYPE)
    for name in PER_TYPE:
        assert sum(figures.get(name, 0) for figures in counts.values()) == totals[name], name


def test_a_refused_report_moves_no_type_counter(store: TaskStore) -> None:
    task = create(store, A)
    token = claim_one(store, task.id)
    before = snapshot(store)
    for report in (
        lambda t: store.complete(task.id, CONSUMER, t, "x", "offline"),
        lambda t: store.fail(task.id, CONSUMER, t, State.DLQ, "x", "provider_problem"),
        lambda t: store.schedule_retry(task.id, CONSUMER, t, 10, "x", "transient"),
    ):
        with pytest.raises(Exception, match="no longer current"):
            report("wrong-" + token)
    assert snapshot(store) == before


def test_the_stores_per_type_reads(stores: Stores) -> None:
    store = stores.sync
    drive_every_counted_transition(store, A)
    done = create(store, B)
    store.complete(done.id, CONSUMER, claim_one(store, done.id), "done", "offline")

    counters = stores.run(stores.aio.type_counters())
    assert counters[B] == {"submitted": 1, "completed": 1}
    assert counters[A]["dead"] == 2
    assert stores.run(stores.aio.type_sizes([A, B, "gamma"])) == {A: 8, B: 1, "gamma": 0}
    assert stores.run(stores.aio.type_sizes([])) == {}


# --- listings by type -----------------------------------------------------------------------------
def walk(stores: Stores, limit: int, state: State | None = None, **filters: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = stores.run(stores.aio.page(state, limit, cursor, **filters))
        pages.append(page.ids)
        if page.cursor is None:
            return pages
        assert len(pages) < 200, "pagination does not terminate"
        cursor = page.cursor


def interleaved(stores: Stores, count: int) -> dict[str, list[str]]:
    """`count` tasks of each type, alternating, several per millisecond (page ties)."""
    made: dict[str, list[str]] = {A: [], B: []}
    tasks = [new_task(task_type=(A, B)[n % 2]) for n in range(2 * count)]
    for start in range(0, len(tasks), 6):  # a bulk create stamps its tasks with one time
        stores.run(stores.aio.create_many(tasks[start : start + 6]))
    for task in tasks:
        made[task.task_type].append(task.id)
    return made


def test_a_type_listing_has_full_pages_and_walks_each_task_once(stores: Stores) -> None:
    made = interleaved(stores, 30)

    pages = walk(stores, 7, task_type=A)

    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    seen = [task_id for page in pages for task_id in page]
    assert sorted(seen) == sorted(made[A]) and len(set(seen)) == 30
    scores = [stores.sync.r.zscore(stores.sync.keys.type_tasks(A), task_id) for task_id in seen]
    assert scores == sorted(scores, reverse=True), "newest created first"


def kill(store: TaskStore, task_ids: list[str]) -> None:
    """Each task, in turn the next in line, to the DLQ."""
    for task_id in task_ids:
        store.fail(task_id, CONSUMER, claim_one(store, task_id), State.DLQ, "x", "provider_problem")
        time.sleep(0.002)  # distinct times of death


def test_state_and_type_read_the_smaller_index_and_fill_pages(stores: Stores) -> None:
    store = stores.sync
    dead = [create(store, t) for t in (A, B, A, B, A, B)]
    kill(store, [t.id for t in dead])
    made = interleaved(stores, 7)  # 14 PENDING, 10 of A (3 dead): A's index is the smaller

    pending_a = walk(stores, 3, State.PENDING, task_type=A)
    dead_b = walk(stores, 2, State.DLQ, task_type=B)  # 6 dead, 10 of B: the DLQ is the smaller

    assert [len(p) for p in pending_a] == [3, 3, 1]
    assert sorted(sum(pending_a, [])) == sorted(made[A])
    assert str(stores.run(stores.aio.page(State.PENDING, 3, None, task_type=A)).cursor).endswith(":type")
    assert dead_b == [[dead[5].id, dead[3].id], [dead[1].id]], "most recently dead first"
    assert str(stores.run(stores.aio.page(State.DLQ, 2, None, task_type=B)).cursor).endswith(":state")


def test_the_index_a_listing_picked_stays_picked_through_its_cursor(stores: Stores) -> None:
    """The sizes change between pages so that the other index becomes the smaller: the cursor's
    index is read on, so the walk neither skips nor repeats."""
    made = interleaved(stores, 6)  # 12 PENDING, 6 of A: A's index is the smaller
    first = stores.run(stores.aio.page(State.PENDING, 2, None, task_type=A))
    assert str(first.cursor).endswith(":type")
    for _ in range(20):  # 26 of A, still 12 PENDING: now the state's index is the smaller
        stores.run(stores.aio.cancel(create(stores.sync, A).id))

    seen, cursor = list(first.ids), first.cursor or ""
    while cursor:
        assert cursor.endswith(":type")
        page = stores.run(stores.aio.page(State.PENDING, 2, cursor, task_type=A))
        seen, cursor = seen + page.ids, page.cursor or ""
    assert sorted(seen) == sorted(made[A]) and len(seen) == 6


def test_state_order_reads_the_state_index_whatever_the_sizes(stores: Stores) -> None:
    store = stores.sync
    first, other, second = (create_apart(store, t) for t in (A, B, A))
    kill(store, [first.id, other.id, second.id])
    assert stores.run(stores.aio.retry(first.id)) is State.DLQ
    kill(store, [first.id])  # created first, died last
    # 3 dead, 2 of A: by size the type's index (creation order) is read; the DLQ view asks for the DLQ's.
    by_size = stores.run(stores.aio.page(State.DLQ, 5, None, task_type=A))
    by_death = stores.run(stores.aio.page(State.DLQ, 5, None, task_type=A, state_order=True))

    assert by_size.ids == [second.id, first.id], "newest created first"
    assert by_death.ids == [first.id, second.id], "most recently dead first"
    assert by_size.cursor is None and by_death.cursor is None


def test_a_sparse_filter_stops_at_the_scan_bound_and_its_cursor_goes_on(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries checked per page are bounded: where matches are rare, a page is short and the next
    goes on after the last entry checked; the walk still returns each match exactly once."""
    monkeypatch.setattr(core.store, "FILTER_SCAN_MAX", 8)  # with limit 2: at most 12 entries checked a page
    rare = [new_task(task_type=B) for _ in range(3)]
    stores.run(stores.aio.create_many(rare))
    time.sleep(0.002)
    stores.run(stores.aio.create_many([new_task(task_type=A) for _ in range(40)]))

    pages = walk(stores, 2, State.PENDING, task_type=B, state_order=True)  # 43 PENDING, 3 of B, oldest

    assert pages[0] == [] and len(pages) > 2, "the first pages found nothing within their bound"
    assert [len(p) for p in pages[-2:]] == [2, 1]
    seen = sum(pages, [])
    assert sorted(seen) == sorted(t.id for t in rare) and len(seen) == 3


def test_a_filter_that_matches_nothing_ends(stores: Stores) -> None:
    interleaved(stores, 3)
    assert walk(stores, 3, State.DLQ, task_type=A, state_order=True) == [[]]
    assert walk(stores, 3, State.PENDING, task_type="gamma") == [[]]


def test_an_owners_listing_checks_type_and_state_in_its_own_index(stores: Stores) -> None:
    mine = [Task(id=new_task().id, task_type=(A, B)[n % 3 == 0], content="x", owner="alice") for n in range(9)]
    theirs = [Task(id=new_task().id, task_type=A, content="x", owner="bob") for _ in range(4)]
    stores.run(stores.aio.create_many(mine))
    stores.run(stores.aio.create_many(theirs))
    cancelled = mine[1]
    stores.run(stores.aio.cancel(cancelled.id))

    of_a = walk(stores, 2, owner="alice", task_type=A)
    pending_a = walk(stores, 10, State.PENDING, owner="alice", task_type=A)

    assert [len(p) for p in of_a] == [2, 2, 2]
    assert sorted(sum(of_a, [])) == sorted(t.id for t in mine if t.task_type == A)
    assert sorted(sum(pending_a, [])) == sorted(t.id for t in mine if t.task_type == A and t is not cancelled)
