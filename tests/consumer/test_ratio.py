"""The consumer's primary/retry preference, on a real Redis with both lists loaded."""

from __future__ import annotations

import random
import uuid

import redis

from consumer.consumer import Consumer
from core.keys import Keys
from core.settings import Settings
from core.store import TaskStore, new_token
from core.task import Task


def load(store: TaskStore, primary: int, retry: int) -> set[str]:
    """Queue tasks on both lists through the real transitions (a retry is a task that failed
    once); returns the ids on the retry list."""
    for _ in range(primary + retry):
        store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x", max_retries=3))
    retried = set()
    for _ in range(retry):
        token = new_token()
        claim = store.claim("loader", token, prefer_retry=False)
        store.schedule_retry(claim.task_id, "loader", token, 0, "boom", "transient")
        retried.add(claim.task_id)
    assert store.promote_due(retry + 1) == retry
    return retried


def share_taken_from_retry(real_redis: redis.Redis, key_prefix: str, retry: int, threshold: int) -> float:
    settings = Settings(retry_ratio=0.3, retry_ratio_floor=0.1, retry_pressure_threshold=threshold)
    store = TaskStore(real_redis, Keys(key_prefix))
    retried = load(store, primary=1500, retry=retry)
    dispatched: list[str] = []
    consumer = Consumer(settings.model_copy(update={"celery_worker_concurrency": 10_000}), store,
                        lambda task_id, token, cid, fields: dispatched.append(task_id), rng=random.Random(7).random)
    while len(dispatched) < 600:
        consumer.run_once()
    assert len(set(dispatched)) == 600
    from_retry = len(retried.intersection(dispatched))
    assert consumer.taken["retry"] == from_retry, "the heartbeat's figures match what was taken"
    return from_retry / 600


def test_share_from_retry_is_the_configured_ratio(real_redis: redis.Redis, key_prefix: str) -> None:
    share = share_taken_from_retry(real_redis, key_prefix, retry=1000, threshold=5000)
    assert abs(share - 0.3) <= 0.05, share


def test_share_from_retry_drops_under_retry_pressure(real_redis: redis.Redis, key_prefix: str) -> None:
    share = share_taken_from_retry(real_redis, key_prefix, retry=1000, threshold=100)
    assert share < 0.2, share
    assert share >= 0.05, "the floor keeps retries moving"
