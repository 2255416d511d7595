"""The scheduler's steps on a real Redis: promotion is exactly-once even with two at once,
orphans come back, finished tasks expire."""

from __future__ import annotations

import json
import threading
import time
import uuid

import redis

from consumer.scheduler import Scheduler
from core.keys import Keys
from core.settings import Settings
from core.states import State
from core.store import TaskStore, new_token
from core.task import Task
from tests.core.helpers import queued


def scheduled_tasks(store: TaskStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x", max_retries=3))
        token = new_token()
        claim = store.claim("c", token, prefer_retry=False)
        store.schedule_retry(claim.task_id, "c", token, 0, "boom", "transient")
        ids.append(claim.task_id)
    return ids


def test_two_schedulers_promote_each_due_task_exactly_once(real_redis: redis.Redis, key_prefix: str) -> None:
    store = TaskStore(real_redis, Keys(key_prefix))
    ids = scheduled_tasks(store, 1000)
    settings = Settings(scheduler_batch_size=50)
    schedulers = [Scheduler(settings, TaskStore(redis.Redis(connection_pool=real_redis.connection_pool), store.keys))
                  for _ in range(2)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda s=s: counts.append(s.promote_once())) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    retries = queued(real_redis, store.keys, "retry")
    assert sorted(retries) == sorted(ids), "every task once, none twice"
    assert sum(counts) == 1000
    assert real_redis.zcard(store.keys.scheduled) == 0


def test_reap_returns_the_tasks_of_a_dead_consumer(real_redis: redis.Redis, key_prefix: str) -> None:
    store = TaskStore(real_redis, Keys(key_prefix))
    store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x", max_retries=3))
    store.beat("dead", {}, ttl=0.1)
    claim = store.claim("dead", new_token(), prefer_retry=False)
    time.sleep(0.2)

    assert Scheduler(Settings(heartbeat_ttl=10**6), store).reap_once() == 0, "Redis restarted only just now"
    assert Scheduler(Settings(heartbeat_interval=0.05, heartbeat_ttl=0.1), store).reap_once() == 1

    task = store.get(claim.task_id)
    assert (task.state, task.retry_count, task.error_type) == (State.PENDING, 1, "worker_lost")
    assert queued(real_redis, store.keys, "retry") == [claim.task_id]


def test_clean_deletes_finished_tasks_past_retention(real_redis: redis.Redis, key_prefix: str) -> None:
    store = TaskStore(real_redis, Keys(key_prefix))
    store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x", max_retries=3))
    token = new_token()
    claim = store.claim("c", token, prefer_retry=False)
    store.complete(claim.task_id, "c", token, "done", "offline")
    scheduler = Scheduler(Settings(result_ttl_seconds=1), store)
    assert scheduler.clean_once() == 0
    time.sleep(1.1)
    assert scheduler.clean_once() == 1
    assert not real_redis.exists(store.keys.task(claim.task_id))
    assert real_redis.zcard(store.keys.state_index(State.COMPLETED)) == 0


def finished_tasks(store: TaskStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x", max_retries=3))
        token = new_token()
        claim = store.claim("c", token, prefer_retry=False)
        store.complete(claim.task_id, "c", token, "done", "offline")
        ids.append(claim.task_id)
    return ids


def test_clean_expires_finished_tasks_in_bounded_batches_with_their_history(
    real_redis: redis.Redis, key_prefix: str
) -> None:
    store = TaskStore(real_redis, Keys(key_prefix))
    ids = finished_tasks(store, 7)
    scheduler = Scheduler(Settings(result_ttl_seconds=1, scheduler_batch_size=3), store)
    time.sleep(1.1)

    assert [scheduler.clean_once() for _ in range(4)] == [3, 3, 1, 0]
    for task_id in ids:
        assert not real_redis.exists(store.keys.task(task_id), store.keys.history(task_id))
    assert real_redis.zcard(store.keys.all_tasks) == 0
    assert real_redis.hget(store.keys.counters, "expired") == "7"


def test_a_full_batch_brings_the_next_clean_forward(real_redis: redis.Redis, key_prefix: str) -> None:
    """A backlog of expired tasks drains round after round, not one batch a minute."""
    store = TaskStore(real_redis, Keys(key_prefix))
    finished_tasks(store, 5)
    scheduler = Scheduler(Settings(result_ttl_seconds=1, scheduler_batch_size=2), store)
    time.sleep(1.1)
    for _ in range(3):
        scheduler.run_once()
    assert real_redis.zcard(store.keys.state_index(State.COMPLETED)) == 0


def test_the_scheduler_beats_so_health_sees_it(real_redis: redis.Redis, key_prefix: str) -> None:
    store = TaskStore(real_redis, Keys(key_prefix))
    scheduler = Scheduler(Settings(heartbeat_ttl=15), store)
    scheduler.run_once()

    beat = json.loads(real_redis.get(store.keys.scheduler_heartbeat) or "{}")
    assert beat["scheduler_id"] == scheduler.id and beat["beat_at"] > 0
    assert 14_000 < real_redis.pttl(store.keys.scheduler_heartbeat) <= 15_000


def test_a_round_prunes_the_token_counts_of_past_days(real_redis: redis.Redis, key_prefix: str) -> None:
    store = TaskStore(real_redis, Keys(key_prefix))
    day = real_redis.time()[0] // 86400
    real_redis.hset(store.keys.owner_tokens, mapping={f"{day - 3}:A": "7", f"{day - 1}:A": "8", f"{day}:A": "9"})
    Scheduler(Settings(), store).run_once()
    assert real_redis.hgetall(store.keys.owner_tokens) == {f"{day - 1}:A": "8", f"{day}:A": "9"}
