"""return_moved.lua on fakeredis and on a real Redis: an id a consumer's blocking wait moved in,
unclaimed, goes back to the head of the primary list untouched (issue 21, 5: the breaker opened
while the consumer waited)."""

from __future__ import annotations

from core.states import State
from core.store import TaskStore
from tests.core.helpers import CONSUMER, Stores, assert_one_place, move_to_inflight, new_task


def test_a_moved_id_goes_back_to_the_head_of_the_queue_untouched(store: TaskStore) -> None:
    first, second = store.create(new_task()), store.create(new_task())
    assert move_to_inflight(store, CONSUMER) == first.id
    before = store.get(first.id)

    assert store.return_moved(CONSUMER, first.id) == "returned"

    assert store.r.lrange(store.keys.pending_primary, 0, -1) == [first.id, second.id], "in its place, first"
    assert store.inflight_count(CONSUMER) == 0
    task = assert_one_place(store, first.id)
    assert task == before and (task.state, task.attempts, task.retry_count) == (State.PENDING, 0, 0)
    assert store.return_moved(CONSUMER, first.id) == "absent", "a second call changes nothing"
    assert store.r.lrange(store.keys.pending_primary, 0, -1) == [first.id, second.id]


def test_a_moved_id_cancelled_meanwhile_only_leaves_the_inflight_list(stores: Stores) -> None:
    store = stores.sync
    task = store.create(new_task())
    assert move_to_inflight(store, CONSUMER) == task.id
    assert stores.run(stores.aio.cancel(task.id)) == State.PENDING  # an operator's cancel meanwhile

    assert store.return_moved(CONSUMER, task.id) == "dropped"
    assert store.inflight_count(CONSUMER) == 0 and store.r.llen(store.keys.pending_primary) == 0
    assert store.get(task.id).state == State.CANCELLED
