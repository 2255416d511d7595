"""The figures the operations API shows, changed only inside the transition scripts: each task's
audit trail, the global counters, each consumer's counts, the run-time histogram, the
throughput rings; plus progress, idempotent and bulk submits, and the DLQ re-drive."""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import re
import time
from pathlib import Path

import pytest

from core.errors import InvalidTransition, StaleAttempt
from core.states import State
from core.store import CONSUMER_STATS_TTL_SECONDS, DURATION_BUCKETS_MS, TaskStore, new_token, ring_buckets, ring_sum
from tests.core.helpers import (
    CONSUMER,
    Stores,
    assert_gone,
    assert_one_place,
    claim_one,
    make_in_state,
    new_task,
    queued,
    snapshot,
    to_retry_list,
)

LIB = Path(__file__).resolve().parents[2] / "core" / "scripts" / "_lib.lua"


def counters(store: TaskStore) -> dict[str, int]:
    store.fold_tally()  # as the scheduler does: the completions' tokens reach the counters
    return {k: int(v) for k, v in store.r.hgetall(store.keys.counters).items()}


def trail(store: TaskStore, task_id: str) -> list[tuple[str, str]]:
    return [(e["from"], e["to"]) for e in store.history(task_id)]


def history(store: TaskStore, task_id: str) -> list[dict[str, object]]:
    return store.history(task_id)


# --- audit trail ---------------------------------------------------------------------------------
def test_the_trail_records_every_state_change_with_its_error(store: TaskStore) -> None:
    task = store.create(new_task())
    token = claim_one(store, task.id)
    store.schedule_retry(task.id, CONSUMER, token, 0, "timed out", "transient")
    store.promote_due(10)
    token = new_token()
    store.claim(CONSUMER, token, prefer_retry=True)
    store.fail(task.id, CONSUMER, token, State.DLQ, "bad key", "provider_problem")

    entries = history(store, task.id)
    assert trail(store, task.id) == [
        ("", "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "SCHEDULED"), ("SCHEDULED", "PENDING"),
        ("PENDING", "ACTIVE"), ("ACTIVE", "DLQ"),
    ]  # fmt: skip
    errors = [(e["error"], e["error_type"]) for e in entries if "error" in e]
    assert errors == [("timed out", "transient"), ("bad key", "provider_problem")]
    assert entries[1]["worker"] == CONSUMER and "worker" not in entries[0]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert store.get(task.id).attempts == 2


def test_a_task_that_completes_at_once_writes_no_entry_and_reads_its_whole_trail(store: TaskStore) -> None:
    """Creation, start and completion are read from the hash: three calls less per task."""
    task = store.create(new_task())
    token = claim_one(store, task.id)
    running = store.get(task.id)
    assert history(store, task.id) == [
        {"at": task.created_at, "from": "", "to": "PENDING"},
        {"at": running.started_at, "from": "PENDING", "to": "ACTIVE", "worker": CONSUMER},
    ]
    store.complete(task.id, CONSUMER, token, "ok", "offline")
    done = store.get(task.id)
    completion = {"at": done.finished_at, "from": "ACTIVE", "to": "COMPLETED", "worker": CONSUMER}
    assert history(store, task.id)[2:] == [completion]
    assert not store.r.exists(store.keys.history(task.id)), "nothing written"


def test_an_attempt_ended_otherwise_writes_its_start_before_its_end(store: TaskStore) -> None:
    task = store.create(new_task(max_retries=3))
    token = claim_one(store, task.id)
    started = store.get(task.id).started_at
    store.release(task.id, CONSUMER, token, "breaker open", "circuit_open")
    token = claim_one(store, task.id, consumer="other")
    second = store.get(task.id).started_at
    store.complete(task.id, "other", token, "ok", "offline")
    assert [(e["from"], e["to"], e["at"], e.get("worker")) for e in history(store, task.id)][1:] == [
        ("PENDING", "ACTIVE", started, CONSUMER), ("ACTIVE", "PENDING", history(store, task.id)[2]["at"], CONSUMER),
        ("PENDING", "ACTIVE", second, "other"), ("ACTIVE", "COMPLETED", store.get(task.id).finished_at, "other"),
    ]  # fmt: skip
    assert len(store.r.lrange(store.keys.history(task.id), 0, -1)) == 2, "only the released attempt's two"


def test_a_trail_written_whole_by_the_code_of_before_reads_the_same(store: TaskStore) -> None:
    """Entries the code of before wrote (every step its own) are neither doubled nor reordered,
    and a task it started that ends now gets only the entries it lacks."""
    task = store.create(new_task(max_retries=3))
    token = claim_one(store, task.id)
    running = store.get(task.id)
    old = [{"at": task.created_at, "from": "", "to": "PENDING"},
           {"at": running.started_at, "from": "PENDING", "to": "ACTIVE", "worker": CONSUMER}]  # fmt: skip
    store.r.rpush(store.keys.history(task.id), *map(json.dumps, old))
    assert history(store, task.id) == old
    store.schedule_retry(task.id, CONSUMER, token, 0, "timed out", "transient")
    assert [(e["from"], e["to"]) for e in history(store, task.id)] == [
        ("", "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "SCHEDULED")]  # fmt: skip
    other = store.create(new_task())
    token = claim_one(store, other.id)
    started = store.get(other.id).started_at
    written = [{"at": other.created_at, "from": "", "to": "PENDING"},
               {"at": started, "from": "PENDING", "to": "ACTIVE", "worker": CONSUMER}]  # fmt: skip
    store.r.rpush(store.keys.history(other.id), *map(json.dumps, written))
    store.complete(other.id, CONSUMER, token, "ok", "offline")
    assert [(e["from"], e["to"]) for e in history(store, other.id)] == [
        ("", "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "COMPLETED")]  # fmt: skip


def test_the_trail_is_bounded(store: TaskStore) -> None:
    task = store.create(new_task(max_retries=100))
    for n in range(30):
        token = claim_one(store, task.id)
        store.release(task.id, CONSUMER, token, f"breaker open {n}", "circuit_open")
    entries = history(store, task.id)
    assert len(entries) == 51, "the newest 50 entries written, and the creation (read from the hash)"
    assert entries[0] == {"at": store.get(task.id).created_at, "from": "", "to": "PENDING"}
    released = [e["error"] for e in entries if e["to"] == "PENDING" and e["from"] == "ACTIVE"]
    assert released == [f"breaker open {n}" for n in range(5, 30)], "the oldest written ones went"
    assert (entries[1]["from"], entries[1]["to"]) == ("PENDING", "ACTIVE"), "each attempt's start kept with its end"
    assert entries[-1]["error"] == "breaker open 29" and entries[-1]["to"] == "PENDING"


def test_a_long_error_is_cut_in_the_trail(store: TaskStore) -> None:
    task = store.create(new_task())
    store.fail(task.id, CONSUMER, claim_one(store, task.id), State.FAILED, "x" * 2000, "input_rejected")
    assert history(store, task.id)[-1]["error"] == "x" * 500
    assert store.get(task.id).last_error == "x" * 2000


@pytest.mark.parametrize("state", [State.COMPLETED, State.DLQ, State.CANCELLED])
def test_delete_and_purge_take_the_trail_with_the_task(stores: Stores, state: State) -> None:
    store = stores.sync
    deleted, expired = make_in_state(stores, state), make_in_state(stores, state)
    stores.run(stores.aio.delete(deleted.id))
    assert store.purge(state, retention_ms=0, max_keep=0, batch=10) == 1
    assert_gone(store, deleted.id)
    assert_gone(store, expired.id)
    assert counters(store)["deleted"] == 1 and counters(store)["expired"] == 1


# --- counters ------------------------------------------------------------------------------------
def test_counters_move_with_each_transition(stores: Stores) -> None:
    store = stores.sync
    for state in (State.COMPLETED, State.FAILED, State.DLQ, State.SCHEDULED, State.CANCELLED):
        make_in_state(stores, state)
    recovered = store.create(new_task())
    store.recover(recovered.id, CONSUMER, claim_one(store, recovered.id), "died")
    dead = make_in_state(stores, State.DLQ)
    stores.run(stores.aio.retry(dead.id))

    assert counters(store) == {
        "submitted": 7, "started": 6, "taken_primary": 6, "completed": 1, "failed": 1, "dead": 2, "retried": 1,
        "cancelled": 1, "recovered": 1, "requeued": 1,
    }  # fmt: skip


def test_a_refused_report_moves_no_counter(store: TaskStore) -> None:
    task = store.create(new_task())
    claim_one(store, task.id)
    before = snapshot(store)
    with pytest.raises(StaleAttempt):
        store.complete(task.id, CONSUMER, "wrong", "x", "offline")
    assert snapshot(store) == before


def test_each_consumer_counts_its_own_settled_attempts(stores: Stores) -> None:
    store = stores.sync
    for outcome in ("complete", "retry", "fail", "complete"):
        task = store.create(new_task())
        token = claim_one(store, task.id, consumer="c-a")
        if outcome == "complete":
            store.complete(task.id, "c-a", token, "ok", "offline")
        elif outcome == "retry":
            store.schedule_retry(task.id, "c-a", token, 60, "boom", "transient")
        else:
            store.fail(task.id, "c-a", token, State.FAILED, "no", "input_rejected")
    lost = store.create(new_task())
    store.recover(lost.id, "c-b", claim_one(store, lost.id, consumer="c-b"), "died")

    stats = store.r.hgetall(store.keys.consumer_stats("c-a"))
    assert {k: int(v) for k, v in stats.items()} == {"completed": 2, "failed": 2, "taken_primary": 4}
    assert store.r.hgetall(store.keys.consumer_stats("c-b")) == {"failed": "1", "taken_primary": "1"}
    assert 0 < store.r.ttl(store.keys.consumer_stats("c-a")) <= CONSUMER_STATS_TTL_SECONDS
    # As the workers table reads them: `processed` is every settled attempt.
    figures = stores.run(stores.aio.consumer_stats(["c-a", "c-b"]))
    assert figures["c-a"] == {"processed": 4, "completed": 2, "failed": 2, "taken": {"primary": 4, "retry": 0}}
    assert figures["c-b"] == {"processed": 1, "completed": 0, "failed": 1, "taken": {"primary": 1, "retry": 0}}


def test_a_beating_consumer_keeps_its_counts(store: TaskStore) -> None:
    """The scripts set the TTL only when they make the hash; each heartbeat renews it."""
    task = store.create(new_task())
    store.complete(task.id, CONSUMER, claim_one(store, task.id), "ok", "offline")
    stats = store.keys.consumer_stats(CONSUMER)
    store.r.expire(stats, 5)
    store.beat(CONSUMER, {}, ttl=10)
    assert CONSUMER_STATS_TTL_SECONDS - 5 < store.r.ttl(stats) <= CONSUMER_STATS_TTL_SECONDS
    store.r.expire(stats, 5)
    other = store.create(new_task())
    store.complete(other.id, CONSUMER, claim_one(store, other.id), "ok", "offline")
    assert store.r.ttl(stats) <= 5, "a report does not renew it (the heartbeat does)"


def test_the_lua_and_python_consumer_stats_ttl_agree() -> None:
    match = re.search(r"local CONSUMER_STATS_TTL = (\d+)", LIB.read_text())
    assert match and int(match.group(1)) == CONSUMER_STATS_TTL_SECONDS


def test_complete_stores_model_and_usage_and_counts_tokens(store: TaskStore) -> None:
    task = store.create(new_task())
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    store.complete(task.id, CONSUMER, claim_one(store, task.id), "sum", "openrouter", "llama-x", usage)
    plain = store.create(new_task())
    store.complete(plain.id, CONSUMER, claim_one(store, plain.id), "sum", "offline")

    got = assert_one_place(store, task.id)
    assert (got.model, got.prompt_tokens, got.completion_tokens, got.total_tokens) == ("llama-x", 120, 30, 150)
    assert (got.progress, got.attempts) == (100, 1)
    other = store.get(plain.id)
    assert (other.model, other.total_tokens) == ("", 0)
    assert (counters(store)["prompt_tokens"], counters(store)["completion_tokens"]) == (120, 30)


# --- histogram and throughput --------------------------------------------------------------------
# Every ms where _lib.lua's bucket changes, from 0 to ARGV[1], as 'ms=bucket'.
BUCKET_CHANGES = """
local found, last = {}, nil
for ms = 0, tonumber(ARGV[1]) do
  local bucket = duration_bucket(ms)
  if bucket ~= last then found[#found + 1] = ms .. '=' .. bucket end
  last = bucket
end
return found
"""


def test_the_lua_buckets_are_the_python_bounds_for_every_ms(stores: Stores) -> None:
    """_lib.lua computes each run time's bucket; it must be the first of DURATION_BUCKETS_MS at
    or above it ('inf' past the last), for every whole ms up to past the last bound."""
    last_ms = DURATION_BUCKETS_MS[-1] + 1
    expected, last = [], None
    for ms in range(last_ms + 1):
        i = bisect.bisect_left(DURATION_BUCKETS_MS, ms)
        bucket = str(DURATION_BUCKETS_MS[i]) if i < len(DURATION_BUCKETS_MS) else "inf"
        if bucket != last:
            expected.append(f"{ms}={bucket}")
        last = bucket
    assert stores.sync.r.eval(LIB.read_text() + BUCKET_CHANGES, 0, last_ms) == expected


def test_completed_run_times_fill_the_histogram(stores: Stores) -> None:
    store = stores.sync
    for _ in range(3):
        make_in_state(stores, State.COMPLETED)
    slow = store.create(new_task())
    token = claim_one(store, slow.id)
    time.sleep(0.15)  # between the 100 ms and 250 ms bounds, with room either side
    store.complete(slow.id, CONSUMER, token, "ok", "offline")

    durations = stores.run(stores.aio.durations())
    assert durations.count == 4 and sum(durations.counts) + durations.overflow == 4
    by_bound = dict(zip(DURATION_BUCKETS_MS, durations.counts, strict=True))
    assert sum(c for b, c in by_bound.items() if b <= 100) == 3, "three quick attempts (≤ 100 ms)"
    assert sum(c for b, c in by_bound.items() if 150 <= b <= 500) == 1 and durations.sum_ms >= 150


def test_throughput_counts_finished_tasks_of_the_last_minute_and_hour(stores: Stores) -> None:
    for state in (State.COMPLETED, State.COMPLETED, State.FAILED, State.DLQ, State.SCHEDULED):
        make_in_state(stores, state)
    figures = stores.run(stores.aio.throughput())
    assert figures == {"last_minute": {"completed": 2, "failed": 2}, "last_hour": {"completed": 2, "failed": 2}}


def test_ring_sum_adds_the_buckets_of_the_window_only() -> None:
    raw = {"65:completed": "3", "65:failed": "1", "7:completed": "2", "66:completed": "2", "6:failed": "9"}
    raw |= {"5:t": "65", "5:completed": "4"}  # a slot of the layout before issue 19: not a bucket
    assert ring_sum(raw, current=66, window=60) == {"completed": 7, "failed": 1}
    assert ring_sum(raw, current=130, window=60) == {"completed": 0, "failed": 0}


# Finishes in both rings (KEYS 1, 2): ARGV pairs of a time (ms) and a kind.
FINISHES = "for i = 1, #ARGV, 2 do finished(KEYS[1], KEYS[2], tonumber(ARGV[i]), ARGV[i + 1]) end"


def test_the_rings_hold_exactly_the_finishes_of_the_last_minute_and_hour(stores: Stores) -> None:
    """Finishes over three hours, a burst in the last two minutes: the readers' figures are the
    true counts of the window; the rings keep little more than their window, and a TTL."""
    rng = random.Random(19)
    start = 1_700_000_000_000
    times = sorted([start + rng.randrange(3 * 3_600_000) for _ in range(1500)]
                   + [start + 3 * 3_600_000 - rng.randrange(120_000) for _ in range(1500)])  # fmt: skip
    finishes = [(at, "failed" if i % 3 == 0 else "completed") for i, at in enumerate(times)]
    r, keys = stores.sync.r, stores.sync.keys
    lib = LIB.read_text()
    for at in range(0, len(finishes), 500):
        args = [item for finish in finishes[at : at + 500] for item in finish]
        r.eval(lib + "\n" + FINISHES, 2, keys.throughput_seconds, keys.throughput_minutes, *args)
    now = times[-1]

    def truth(unit_ms: int) -> list[tuple[int, int, int]]:
        current = now // unit_ms
        rows = []
        for bucket in range(current - 59, current + 1):
            kinds = [kind for at, kind in finishes if at // unit_ms == bucket]
            rows.append((bucket * unit_ms, kinds.count("completed"), kinds.count("failed")))
        return rows

    by_second, by_minute = r.hgetall(keys.throughput_seconds), r.hgetall(keys.throughput_minutes)
    assert ring_buckets(by_second, 1000, now, 60) == truth(1000)
    assert ring_buckets(by_minute, 60_000, now, 60) == truth(60_000)
    minute = ring_sum(by_second, now // 1000, 60)
    assert minute == {"completed": sum(r[1] for r in truth(1000)), "failed": sum(r[2] for r in truth(1000))}
    assert minute["completed"] > 100
    assert len(by_second) <= 2 * 61 and len(by_minute) <= 2 * 61
    assert 0 < r.pttl(keys.throughput_seconds) <= 120_000 and 0 < r.pttl(keys.throughput_minutes) <= 7_200_000


# --- progress ------------------------------------------------------------------------------------
def test_progress_is_set_by_the_owning_attempt_only(store: TaskStore) -> None:
    task = store.create(new_task())
    token = claim_one(store, task.id)
    store.set_progress(task.id, token, 140, "summarizing chunk 2 of 3")
    got = store.get(task.id)
    assert (got.progress, got.current_step) == (100, "summarizing chunk 2 of 3")
    store.set_progress(task.id, token, 40, "chunk 3")
    assert store.get(task.id).progress == 40
    before = snapshot(store)
    with pytest.raises(StaleAttempt):
        store.set_progress(task.id, "old-token", 90, "late")
    assert snapshot(store) == before


# --- idempotent and bulk submits ----------------------------------------------------------------
def test_the_same_idempotency_key_returns_the_first_tasks(stores: Stores) -> None:
    first = stores.run(stores.aio.create_many([new_task()], "key-1", 60_000))
    again = stores.run(stores.aio.create_many([new_task()], "key-1", 60_000))
    other = stores.run(stores.aio.create_many([new_task()], "key-2", 60_000))

    assert not first.replayed and first.created_at > 0
    assert again.replayed and again.ids == first.ids
    assert other.ids != first.ids
    assert len(queued(stores.sync.r, stores.sync.keys)) == 2
    assert counters(stores.sync)["submitted"] == 2


def test_a_key_whose_task_was_deleted_is_free_again(stores: Stores) -> None:
    first = stores.run(stores.aio.create_many([new_task()], "key-1", 60_000))
    stores.run(stores.aio.delete(first.ids[0]))
    again = stores.run(stores.aio.create_many([new_task()], "key-1", 60_000))
    assert not again.replayed and again.ids != first.ids


def test_concurrent_duplicates_create_one_task(stores: Stores) -> None:
    async def race() -> list[list[str]]:
        results = await asyncio.gather(*(stores.aio.create_many([new_task()], "dup", 60_000) for _ in range(20)))
        return [r.ids for r in results]

    ids = stores.run(race())
    assert len({tuple(i) for i in ids}) == 1
    assert len(queued(stores.sync.r, stores.sync.keys)) == 1


def test_bulk_create_is_one_atomic_step_in_order(stores: Stores) -> None:
    store = stores.sync
    tasks = [new_task() for _ in range(5)]
    created = stores.run(stores.aio.create_many(tasks))
    assert created.ids == [t.id for t in tasks]
    assert queued(store.r, store.keys) == created.ids
    for task in tasks:
        assert assert_one_place(store, task.id).created_at == created.created_at


def test_bulk_create_with_an_existing_id_creates_nothing(stores: Stores) -> None:
    existing = stores.sync.create(new_task())
    before = snapshot(stores.sync)
    with pytest.raises(InvalidTransition):
        stores.run(stores.aio.create_many([new_task(), new_task(task_id=existing.id)]))
    assert snapshot(stores.sync) == before


# --- DLQ re-drive --------------------------------------------------------------------------------
def test_requeue_dead_moves_the_given_ids_and_reports_the_rest(stores: Stores) -> None:
    store = stores.sync
    dead = [make_in_state(stores, State.DLQ) for _ in range(3)]
    done = make_in_state(stores, State.COMPLETED)

    moved, skipped = stores.run(stores.aio.requeue_dead([dead[0].id, done.id, "nope"], batch=10))
    assert (moved, skipped) == (1, [done.id, "nope"])
    got = assert_one_place(store, dead[0].id)
    assert (got.state, got.retry_count) == (State.PENDING, 0)
    assert queued(store.r, store.keys, "retry") == [dead[0].id]


def test_requeue_dead_without_ids_takes_the_oldest_batch(stores: Stores) -> None:
    store = stores.sync
    dead = [make_in_state(stores, State.DLQ).id for _ in range(3)]
    assert stores.run(stores.aio.requeue_dead([], batch=2)) == (2, [])
    assert stores.run(stores.aio.requeue_dead([], batch=2)) == (1, [])
    assert stores.run(stores.aio.requeue_dead([], batch=2)) == (0, [])
    assert sorted(queued(store.r, store.keys, "retry")) == sorted(dead)  # ties on the ms go by id
    assert trail(store, dead[0])[-1] == ("DLQ", "PENDING")


def test_each_claim_counts_the_list_it_took_from_on_every_path(store: TaskStore) -> None:
    """The flow diagram's Primary → Active and Retry → Active, and each consumer's own figures:
    the preferred side and the fallback."""
    first, second = store.create(new_task()), store.create(new_task())
    assert store.claim("c-a", new_token(), prefer_retry=True).task_id == first.id  # retry empty: primary
    assert store.claim("c-b", new_token(), prefer_retry=False).task_id == second.id
    retried = new_task()
    to_retry_list(store, retried)  # claimed once from primary by CONSUMER, then promoted
    assert store.claim("c-a", new_token(), prefer_retry=True).task_id == retried.id
    assert store.claim("c-a", new_token(), prefer_retry=False).status == "empty"
    totals = counters(store)
    assert (totals["taken_primary"], totals["taken_retry"], totals["started"]) == (3, 1, 4)
    stats = {c: store.r.hgetall(store.keys.consumer_stats(c)) for c in ("c-a", "c-b", CONSUMER)}
    assert [(s.get("taken_primary"), s.get("taken_retry")) for s in stats.values()] == [
        ("1", "1"), ("1", None), ("1", None)
    ]


def test_a_claim_answered_twice_counts_once(store: TaskStore) -> None:
    store.create(new_task())
    token = new_token()
    assert store.claim("c-a", token, prefer_retry=False).status == "ok"
    assert store.claim("c-a", token, prefer_retry=False).source == "again"
    assert counters(store)["taken_primary"] == 1


@pytest.mark.parametrize("state", [State.DLQ, State.FAILED, State.CANCELLED])
def test_an_operator_retry_counts_its_own_origin(stores: Stores, state: State) -> None:
    """DLQ → Retry on the diagram counts re-driven dead tasks only, never a cancelled one."""
    task = make_in_state(stores, state)
    before = counters(stores.sync)
    stores.run(stores.aio.retry(task.id))
    moved = {name: value - before.get(name, 0) for name, value in counters(stores.sync).items()}
    expected = {State.DLQ: "requeued", State.FAILED: "requeued_failed", State.CANCELLED: "requeued_cancelled"}
    assert {name: n for name, n in moved.items() if n} == {expected[state]: 1}


def test_ring_buckets_lists_the_window_oldest_first_and_skips_older_buckets() -> None:
    # Bucket 65 is in the window, bucket 6 a minute older (still there until the next prune).
    raw = {"65:completed": "4", "65:failed": "1", "6:completed": "9", "6:failed": "9"}
    rows = ring_buckets(raw, 1000, now_ms=66_500, window=60)
    assert [start for start, _, _ in rows] == [1000 * b for b in range(7, 67)]
    assert {start: (c, f) for start, c, f in rows if c or f} == {65_000: (4, 1)}
