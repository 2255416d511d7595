"""Who goes first (issue 18): strict priority between levels, owners in turn within a level, FIFO
within an owner, per-key limits held in the claim itself; on fakeredis and on a real Redis.

Every test ends with the pending-work structures checked against the tasks themselves
(`assert_queues_consistent`): depths, backlogs, the owners' turns and their running counts.
"""

from __future__ import annotations

import uuid
from collections import Counter

from core.states import State
from core.store import Place, TaskStore, new_token
from core.task import Task
from tests.core.helpers import (
    CONSUMER,
    Stores,
    assert_one_place,
    assert_queues_consistent,
    queued,
    stored_before_priorities,
)


def submit(store: TaskStore, owner: str = "", priority: int = 5, count: int = 1) -> list[str]:
    ids = []
    for _ in range(count):
        task = Task(id=uuid.uuid4().hex, task_type="summarize", content="x", max_retries=3, owner=owner,
                    priority=priority)  # fmt: skip
        ids.append(store.create(task).id)
    return ids


def claim(store: TaskStore, prefer_retry: bool = False) -> str:
    """The id the next claim takes ("" when none may run)."""
    got = store.claim(CONSUMER, new_token(), prefer_retry)
    assert got.status in ("ok", "empty")
    return got.task_id


def owner_of(store: TaskStore, task_id: str) -> str:
    return store.get(task_id).owner


def finish(store: TaskStore, task_id: str, tokens: int = 0) -> None:
    task = store.get(task_id)
    usage = {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
    store.complete(task_id, CONSUMER, task.attempt, "done", "offline", usage=usage)


def test_levels_are_strict_and_each_level_is_fifo(store: TaskStore) -> None:
    relaxed = submit(store, priority=9, count=2)
    normal = submit(store, count=3)
    late_urgent = submit(store, priority=0, count=2)
    assert [claim(store) for _ in range(7)] == late_urgent + normal + relaxed
    assert claim(store) == ""
    assert_queues_consistent(store)


def test_a_retry_keeps_its_priority_and_a_more_urgent_level_goes_first_on_either_side(store: TaskStore) -> None:
    """The consumer's 70/30 draw only chooses between the two sides at the same level."""
    urgent = submit(store, priority=1)[0]
    assert claim(store) == urgent
    store.schedule_retry(urgent, CONSUMER, store.get(urgent).attempt, 0, "boom", "transient")
    assert store.promote_due(10) == 1
    assert queued(store.r, store.keys, "retry", priority=1) == [urgent]
    fresh = submit(store, count=2)
    assert claim(store, prefer_retry=False) == urgent, "level 1 on the retry side beats level 5 new work"
    assert store.get(urgent).priority == 1
    assert claim(store, prefer_retry=True) == fresh[0], "no retry at level 5: new work"
    assert_queues_consistent(store)


def test_owners_take_turns_within_a_level(store: TaskStore) -> None:
    """The issue's figure, scaled down: A queues 200, then B queues 20 at the same level; every
    one of B's starts before A has started 40 more."""
    submit(store, "A", count=200)
    started = [owner_of(store, claim(store)) for _ in range(5)]
    submit(store, "B", count=20)
    after_b = [owner_of(store, claim(store)) for _ in range(60)]
    last_b = max(n for n, owner in enumerate(after_b) if owner == "B")
    assert Counter(after_b[: last_b + 1])["B"] == 20
    assert Counter(after_b[: last_b + 1])["A"] <= 21, after_b
    assert started == ["A"] * 5
    assert_queues_consistent(store)


def test_within_an_owner_the_order_is_fifo_while_owners_alternate(store: TaskStore) -> None:
    a, b = submit(store, "A", count=3), submit(store, "B", count=3)
    assert [claim(store) for _ in range(6)] == [a[0], b[0], a[1], b[1], a[2], b[2]]


def test_a_concurrency_cap_holds_the_owner_until_one_of_its_tasks_ends(store: TaskStore) -> None:
    store.set_limits({"A:concurrency": 2})
    submit(store, "A", count=5)
    b = submit(store, "B", count=4)
    order = [claim(store) for _ in range(6)]
    assert [owner_of(store, i) for i in order] == ["A", "B", "A", "B", "B", "B"]
    assert claim(store) == "", "A is at its cap and B has nothing left"
    assert store.r.zscore(store.keys.owners_held, "A") == float("inf")
    assert_queues_consistent(store)

    finish(store, order[0])
    assert store.r.zscore(store.keys.owners_held, "A") is None, "a task ended: A may run again"
    assert owner_of(store, claim(store)) == "A"
    assert claim(store) == ""
    assert set(b) <= set(store.inflight_ids(CONSUMER))
    assert_queues_consistent(store)


def test_a_hold_ends_on_every_way_a_task_stops_running(stores: Stores) -> None:
    """Cancel, failure, retry, hand-back and recovery each free a slot under the cap."""
    store = stores.sync
    store.set_limits({"*:concurrency": 1})
    submit(store, "A", count=6)

    def running() -> Task:
        task_id = claim(store)
        assert claim(store) == "", "one at a time"
        return store.get(task_id)

    task = running()
    assert stores.run(stores.aio.cancel(task.id)) is State.ACTIVE
    task = running()
    store.fail(task.id, CONSUMER, task.attempt, State.FAILED, "no", "input_rejected")
    task = running()
    store.schedule_retry(task.id, CONSUMER, task.attempt, 3600, "later", "transient")
    task = running()
    store.release(task.id, CONSUMER, task.attempt, "breaker open", "breaker_open")
    task = running()
    assert store.recover(task.id, CONSUMER, task.attempt, "lease expired") == "requeued"
    running()
    assert_queues_consistent(store)


def test_a_daily_token_budget_holds_the_owner_until_the_next_utc_day(store: TaskStore) -> None:
    store.set_limits({"A:daily_tokens": 100})
    a = submit(store, "A", count=3)
    b = submit(store, "B", count=2)
    first = claim(store)
    finish(store, first, tokens=120)
    assert [claim(store) for _ in range(3)] == [b[0], b[1], ""], "A is past its budget: only B runs"
    seconds, _ = store.r.time()
    midnight = (seconds // 86400 + 1) * 86400 * 1000
    assert store.r.zscore(store.keys.owners_held, "A") == midnight
    assert queued(store.r, store.keys, owner="A") == a[1:], "waiting, not refused"
    assert_queues_consistent(store)

    # The next day: its token count starts from nothing, and the hold's time has come.
    store.r.hdel(store.keys.owner_tokens, f"{seconds // 86400}:A")
    store.r.zadd(store.keys.owners_held, {"A": 0})
    assert claim(store) == "", "a claim does not look at holds: the scheduler does"
    store.promote_due(10)
    assert claim(store) == a[1]
    assert_queues_consistent(store)


def test_tokens_count_in_one_hash_per_owner_and_day(store: TaskStore) -> None:
    submit(store, "A", count=2)
    finish(store, claim(store), tokens=30)
    finish(store, claim(store), tokens=12)
    submit(store, "", count=1)
    finish(store, claim(store), tokens=5)
    day = store.r.time()[0] // 86400
    assert store.r.hgetall(store.keys.owner_tokens) == {f"{day}:A": "42", f"{day}:": "5"}
    assert store.r.ttl(store.keys.owner_tokens) == -1, "no TTL: the scheduler prunes past days"


def test_pruning_deletes_the_days_before_yesterday_only(store: TaskStore) -> None:
    day = store.r.time()[0] // 86400
    kept = {f"{day}:A": "1", f"{day - 1}:A": "2", f"{day}:": "3", "not-a-day": "4", f"{day + 1}:B": "5"}
    old = {f"{day - 2}:A": "6", f"{day - 30}:B:with:colons": "7", f"{day - 2}:": "8"}
    store.r.hset(store.keys.owner_tokens, mapping={**kept, **old})
    assert store.prune_token_days(count=100) == len(old)
    assert store.r.hgetall(store.keys.owner_tokens) == kept
    assert store.prune_token_days(count=100) == 0


def test_pruning_walks_a_large_hash_a_page_per_call(store: TaskStore) -> None:
    day = store.r.time()[0] // 86400
    old = {f"{day - 5}:owner-{n}": "1" for n in range(1000)}  # past a listpack: HSCAN pages it
    store.r.hset(store.keys.owner_tokens, mapping={**old, f"{day}:A": "9"})
    deleted = [store.prune_token_days(count=50) for _ in range(100)]
    assert max(deleted) < len(old), "bounded per call"
    assert sum(deleted) == len(old)
    assert store.r.hgetall(store.keys.owner_tokens) == {f"{day}:A": "9"}


def test_new_limits_free_the_owners_they_no_longer_hold(store: TaskStore) -> None:
    store.set_limits({"A:concurrency": 1})
    a = submit(store, "A", count=2)
    assert claim(store) == a[0] and claim(store) == ""
    assert store.set_limits({"A:concurrency": 2}) == 1
    assert claim(store) == a[1]
    assert_queues_consistent(store)


def test_withdrawing_pending_work_keeps_the_turns_right(stores: Stores) -> None:
    store = stores.sync
    a, b = submit(store, "A", count=2), submit(store, "B", count=1)
    stores.run(stores.aio.cancel(b[0]))
    stores.run(stores.aio.delete(a[0]))
    assert_queues_consistent(store)
    assert [claim(store), claim(store)] == [a[1], ""]
    assert store.r.zcard(store.keys.ready("primary")) == 0


def test_tasks_queued_before_priorities_are_adopted_as_priority_5_of_their_owner(stores: Stores) -> None:
    store = stores.sync
    old = [stored_before_priorities(store, store.keys.legacy_primary) for _ in range(3)]
    old_retry = stored_before_priorities(store, store.keys.legacy_retry)
    stores.run(stores.aio.cancel(old[1]))
    assert store.adopt_legacy(batch=2) == 3 and store.adopt_legacy(batch=2) == 1
    assert store.adopt_legacy(batch=2) == 0
    assert queued(store.r, store.keys) == [old[0], old[2]]
    assert queued(store.r, store.keys, "retry") == [old_retry]
    for task_id in (old[0], old[2], old_retry):
        assert assert_one_place(store, task_id).priority == 5
    assert claim(store) == old[0]
    assert_queues_consistent(store)


def test_usage_reads_an_owners_limits_and_use(stores: Stores) -> None:
    store = stores.sync
    store.set_limits({"A:concurrency": 1, "*:daily_tokens": 500})
    submit(store, "A", count=3)
    finish(store, claim(store), tokens=42)
    claim(store)
    usage = stores.run(stores.aio.usage("A"))
    figures = (usage.concurrency, usage.daily_tokens, usage.active, usage.backlog, usage.tokens_today)
    assert figures == (1, 500, 1, 1, 42)
    assert usage.held_until is None, "not held until a claim finds it at its cap"
    assert claim(store) == ""
    assert stores.run(stores.aio.usage("A")).held_until == float("inf")
    other = stores.run(stores.aio.usage("nobody"))
    assert (other.concurrency, other.daily_tokens, other.active, other.backlog) == (None, 500, 0, 0)


def test_a_held_owner_s_turns_are_kept_without_looking_into_its_lists(stores: Stores) -> None:
    """Holding and freeing an owner names no list (every key a script touches is in KEYS): the
    turns it had, and those its new work or its cancels change meanwhile, wait in one hash."""
    store = stores.sync
    store.set_limits({"A:concurrency": 1})
    a3, a7 = submit(store, "A", priority=3, count=2), submit(store, "A", priority=7)
    assert claim(store) == a3[0]
    assert claim(store) == "", "A is at its cap"
    assert set(store.r.hget(store.keys.owners_held_turns, "A").split()) == {"primary:3", "primary:7"}
    urgent = submit(store, "A", priority=1)
    assert stores.run(stores.aio.cancel(a7[0])) is State.PENDING
    assert set(store.r.hget(store.keys.owners_held_turns, "A").split()) == {"primary:1", "primary:3"}
    assert_queues_consistent(store)

    finish(store, a3[0])
    assert store.r.hexists(store.keys.owners_held_turns, "A") is False
    assert claim(store) == urgent[0], "its turns are back, the most urgent first"
    assert_queues_consistent(store)


def test_an_owner_held_before_turns_were_kept_gets_all_its_levels_back(store: TaskStore) -> None:
    a = submit(store, "A", priority=2) + submit(store, "A", priority=8)
    store.r.zadd(store.keys.owners_held, {"A": float("inf")})
    store.r.zrem(store.keys.ready("primary"), "2A", "8A")
    store.set_limits({})
    assert [claim(store), claim(store), claim(store)] == [*a, ""], "the empty levels cost a look, no more"
    assert_queues_consistent(store)


def test_a_step_named_with_another_place_than_the_task_s_is_refused_as_moved(stores: Stores) -> None:
    """The caller reads where a task's keys are; the script checks it again, and the store reads
    once more: a task claimed between the read and a cancel is still cancelled."""
    store = stores.sync
    task_id = submit(store, "A", priority=2)[0]
    assert store._run(store.ops.cancel(task_id, Place(owner="B", level=2)))[0] == "moved"
    assert store._run(store.ops.cancel(task_id, Place(owner="A", level=5)))[0] == "moved"
    assert claim(store) == task_id
    assert store._run(store.ops.cancel(task_id, Place(owner="A", level=2)))[0] == "moved", "claimed since"
    assert store._run(store.ops.promote_due([(task_id, Place(owner="B"))])) == 0
    assert stores.run(stores.aio.cancel(task_id)) is State.ACTIVE
    assert store.inflight_ids(CONSUMER) == []
    assert_queues_consistent(store)
