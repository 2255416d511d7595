"""Who goes first, on the real stack (issue 18): API keys submit through the HTTP API, real
consumers claim, real Celery workers call the loopback stand-in LLM.

- strict order across levels and FIFO within one, from a bulk of mixed priorities;
- the fairness figure: key A queues 2,000, then key B 20 at the same level; every one of B's
  starts before A has started 40 more;
- a per-key concurrency cap holds fleet-wide while a worker container is SIGKILLed;
- a daily token budget: past it, the key's tasks wait (B's run), and /usage says why and until when.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from api.auth import hash_key
from core.states import State
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration

KEYS = {"alice": "alice-secret-key-0001", "bob": "bob-secret-key-0002"}
API_KEYS = ",".join(f"{name}:submit:{hash_key(key)}" for name, key in KEYS.items())
OPEN_SUBMITS = {"API_KEYS": API_KEYS, "SUBMIT_RATE_PER_SECOND": "100000", "SUBMIT_RATE_BURST": "100000"}


def bulk(stack: Stack, key: str, priorities: list[int]) -> list[str]:
    """One bulk submit as `key`, item n at priorities[n]; the ids in order."""
    items = [{"content": f"text {n} of {key}", "priority": p} for n, p in enumerate(priorities)]
    response = stack.http.post("/api/v1/tasks/summarize/bulk", json={"items": items}, headers=_auth(key))
    assert response.status_code == 202, response.text
    return [item["task_id"] for item in response.json()["items"]]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[key]}"}


def started_order(stack: Stack, ids: list[str]) -> list[str]:
    tasks = [stack.store.get(task_id) for task_id in ids]
    assert all(t.started_at for t in tasks)
    return [t.id for t in sorted(tasks, key=lambda t: (t.started_at, t.id))]


def test_levels_are_strict_and_fifo_within_a_level_from_a_mixed_bulk(make_stack: Callable[..., Stack]) -> None:
    # One slot and no prefetch: the consumer claims one task at a time, so claim order is visible.
    stack = make_stack(**OPEN_SUBMITS, CELERY_WORKER_CONCURRENCY="1", WORKER_PREFETCH="0")
    stack.start("api")
    priorities = [7, 0, 5, 0, 9, 3, 5]
    ids = bulk(stack, "alice", priorities)
    for task_id, priority in zip(ids, priorities, strict=True):
        assert stack.http.get(f"/api/v1/tasks/{task_id}", headers=_auth("alice")).json()["priority"] == priority
    listed = stack.http.get("/api/v1/tasks", params={"priority": 0}, headers=_auth("alice")).json()
    assert {item["task_id"] for item in listed["items"]} == {ids[1], ids[3]}

    stack.start("worker")
    stack.start("consumer")
    stack.start("scheduler")
    stack.wait_started(("a",))
    assert set(stack.wait_terminal(ids, timeout=120).values()) == {State.COMPLETED}
    expected = [ids[1], ids[3], ids[5], ids[2], ids[6], ids[0], ids[4]]  # 0, 0, 3, 5, 5, 7, 9
    assert started_order(stack, ids) == expected
    stack.assert_nothing_left()


def test_a_small_key_is_not_starved_by_a_big_backlog(make_stack: Callable[..., Stack], stub: StubLLM) -> None:
    """The issue's figure. Every task is one 50 ms call; two containers of 8 slots each."""
    stack = make_stack(**OPEN_SUBMITS, CELERY_WORKER_CONCURRENCY="8").start_all(pairs=("a", "b"))
    a_ids = [task_id for _ in range(20) for task_id in bulk(stack, "alice", [5] * 100)]
    b_ids = bulk(stack, "bob", [5] * 20)
    b_submitted = min(stack.store.get(task_id).created_at for task_id in b_ids)
    assert (stack.redis.zscore(stack.keys.owners_backlog, "alice") or 0) > 100, "A still has a backlog"

    states = stack.wait_terminal(a_ids + b_ids, timeout=600)
    assert set(states.values()) == {State.COMPLETED}
    b_last_start = max(stack.store.get(task_id).started_at for task_id in b_ids)
    a_between = [t for t in map(stack.store.get, a_ids) if b_submitted <= t.started_at <= b_last_start]
    print(f"\nA started {len(a_between)} tasks between B's submit and B's last start (B: 20 tasks)")
    assert len(a_between) < 40, f"A started {len(a_between)} while B's 20 waited"
    stack.assert_nothing_left()


def test_a_concurrency_cap_holds_fleet_wide_while_a_container_is_killed(
    make_stack: Callable[..., Stack], stub: StubLLM
) -> None:
    stub.delay = 0.4
    limits = {"alice": {"concurrency": 2}}
    stack = make_stack(**OPEN_SUBMITS, API_KEY_LIMITS=json.dumps(limits), CELERY_WORKER_CONCURRENCY="4")
    stack.start_all(pairs=("a", "b"))
    alice, bob = bulk(stack, "alice", [5] * 16), bulk(stack, "bob", [5] * 8)

    most: list[int] = [0]
    stop = threading.Event()

    def watch() -> None:  # ACTIVE tasks of alice, from the state index and each task's owner
        while not stop.is_set():
            active = stack.redis.zrange(stack.keys.state_index(State.ACTIVE), 0, -1)
            owners = [stack.redis.hget(stack.keys.task(task_id), "owner") for task_id in active]
            most[0] = max(most[0], owners.count("alice"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        wait_until(lambda: _running(stack, "consumer-a"), 60, what="container a to run a task")
        stack.kill("consumer-a")
        stack.kill("worker-a")
        states = stack.wait_terminal(alice + bob, timeout=300)
    finally:
        stop.set()
        watcher.join(5)
    assert set(states.values()) == {State.COMPLETED}, "nothing lost with the container"
    assert most[0] == 2, f"at most 2 of alice's tasks ran at once (seen {most[0]})"
    assert stack.redis.hgetall(stack.keys.owners_active) == {}
    assert stack.redis.zcard(stack.keys.owners_held) == 0
    stack.assert_nothing_left()


def _running(stack: Stack, consumer: str) -> bool:
    """Whether the consumer of container `consumer` holds a task in flight now."""
    pair = consumer.rsplit("-", 1)[1]
    return any(
        stack.redis.llen(stack.keys.inflight(c)) > 0
        for c in stack.redis.smembers(stack.keys.consumers)
        if c.startswith(f"{stack.prefix}{pair}:")
    )


def test_past_its_daily_budget_a_keys_tasks_wait_for_the_next_day(
    make_stack: Callable[..., Stack], stub: StubLLM
) -> None:
    limits = {"alice": {"daily_tokens": 5}}
    stack = make_stack(**OPEN_SUBMITS, API_KEY_LIMITS=json.dumps(limits)).start_all()
    first = bulk(stack, "alice", [5])
    assert stack.wait_terminal(first, timeout=60) == {first[0]: State.COMPLETED}
    spent = stack.store.get(first[0]).total_tokens
    assert spent > 5

    waiting, others = bulk(stack, "alice", [5, 5, 5]), bulk(stack, "bob", [5, 5])
    assert set(stack.wait_terminal(others, timeout=60).values()) == {State.COMPLETED}
    time.sleep(1.0)
    assert {stack.store.get(task_id).state for task_id in waiting} == {State.PENDING}, "waiting, not refused"
    usage = _usage(stack, "alice")
    seconds = int(stack.redis.time()[0])
    assert usage["tokens_today"] == spent and usage["limits"]["daily_tokens"] == 5
    assert (usage["waiting"], usage["resumes_at"]) == ("daily_tokens", (seconds // 86400 + 1) * 86400 * 1000)
    assert (usage["backlog"], usage["active"]) == (3, 0)
    assert _usage(stack, "bob")["waiting"] is None


def _usage(stack: Stack, key: str) -> dict[str, Any]:
    response = stack.http.get("/api/v1/usage", headers=_auth(key))
    assert response.status_code == 200, response.text
    return dict(response.json())
