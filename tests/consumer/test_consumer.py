"""The consumer's step on a real Redis: backpressure, the breaker gate, failed dispatch, drain."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid

import pytest
import redis

from consumer.__main__ import celery_dispatch
from consumer.consumer import BreakerGate, Consumer, WorkerWatch
from core.breaker import SharedBreaker
from core.errors import CircuitOpen, LLMTransient
from core.keys import Keys
from core.settings import Settings
from core.states import State
from core.store import Claim, TaskStore
from core.task import Task
from tests.core.helpers import queued
from tests.integration.stack import wait_until
from worker.celery_app import create_celery


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings(
        redis_url=redis_url, redis_key_prefix=key_prefix, celery_worker_concurrency=2, worker_prefetch=0,
        consumer_block_seconds=0.1, circuit_breaker_fail_max=2, circuit_breaker_reset_timeout=1,
    )


@pytest.fixture
def store(real_redis: redis.Redis, settings: Settings) -> TaskStore:
    return TaskStore(real_redis, Keys(settings.redis_key_prefix))


def submit(store: TaskStore, count: int) -> list[str]:
    return [store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x", max_retries=3)).id
            for _ in range(count)]


def test_takes_no_more_than_the_worker_has_slots(settings: Settings, store: TaskStore) -> None:
    ids = submit(store, 3)
    sent: list[str] = []
    consumer = Consumer(settings, store, lambda tid, tok, cid, fields: sent.append(tid))
    assert [consumer.run_once() for _ in range(3)] == [ids[0], ids[1], None]
    assert sent == ids[:2] and store.inflight_count(consumer.id) == 2
    token = store.get(ids[0]).attempt
    store.complete(ids[0], consumer.id, token, "done", "offline")  # a slot frees up
    assert consumer.run_once() == ids[2]


@pytest.mark.parametrize(("prefetch", "held"), [(1, 3), (8, 4)])
def test_prefetched_tasks_wait_in_the_worker_at_most_one_per_thread(
    settings: Settings, store: TaskStore, prefetch: int, held: int
) -> None:
    ids = submit(store, 5)
    consumer = Consumer(settings.model_copy(update={"worker_prefetch": prefetch}), store, lambda *_: None)
    assert [consumer.run_once() for _ in range(5)] == [*ids[:held], *[None] * (5 - held)]
    assert store.inflight_count(consumer.id) == held
    assert consumer.heartbeat_info()["concurrency"] == 2, "the heartbeat names the threads"


def test_a_failed_dispatch_puts_the_task_back_without_spending_a_retry(settings: Settings, store: TaskStore) -> None:
    (task_id,) = submit(store, 1)

    def broker_down(tid: str, tok: str, cid: str, fields: dict[str, str]) -> None:
        raise ConnectionError("broker unreachable")

    consumer = Consumer(settings, store, broker_down)
    assert consumer.run_once() is None
    consumer.dispatch = lambda tid, tok, cid, fields: None
    assert consumer.run_once() == task_id, "released to the head of the queue, then taken again"
    task = store.get(task_id)
    assert (task.state, task.retry_count) == (State.ACTIVE, 0)


def test_an_open_breaker_stops_the_consumer_then_lets_one_probe_through(
    settings: Settings, store: TaskStore, redis_url: str
) -> None:
    breaker = SharedBreaker(settings, redis.Redis.from_url(redis_url))
    with pytest.raises(LLMTransient):
        breaker.call(_fail)
    with pytest.raises(CircuitOpen):  # the failure that opens it
        breaker.call(_fail)
    ids = submit(store, 3)
    consumer = Consumer(settings, store, lambda tid, tok, cid, fields: None, gate=BreakerGate(breaker, ttl=0))

    assert consumer.run_once() is None and store.inflight_count(consumer.id) == 0
    time.sleep(1.1)  # the reset timeout passes: probe mode, one task at a time
    assert [consumer.run_once(), consumer.run_once()] == [ids[0], None]
    breaker.close()
    assert consumer.run_once() == ids[1]


def test_drain_hands_back_what_did_not_finish(settings: Settings, store: TaskStore) -> None:
    ids = submit(store, 2)
    consumer = Consumer(settings, store, lambda tid, tok, cid, fields: None)
    consumer.beat()
    consumer.run_once()
    consumer.run_once()
    store.complete(ids[0], consumer.id, store.get(ids[0]).attempt, "done", "offline")

    assert consumer.drain(grace=0.2) == 1

    task = store.get(ids[1])
    assert (task.state, task.retry_count, task.error_type) == (State.PENDING, 0, "shutdown")
    assert queued(store.r, store.keys) == [ids[1]]
    assert not store.r.exists(store.keys.heartbeat(consumer.id))


def _fail() -> None:
    raise LLMTransient("provider down")



class _LosesOneReply(TaskStore):
    """The store as a consumer meets it when Redis ran a claim that took a task but the connection
    dropped before its reply arrived (redis-py's own retries spent)."""

    lost = False

    def claim(self, consumer_id: str, token: str, prefer_retry: bool) -> Claim:
        claim = super().claim(consumer_id, token, prefer_retry)
        if claim.status == "ok" and not self.lost:
            self.lost = True
            raise redis.ConnectionError("connection dropped before the reply")
        return claim


@pytest.mark.parametrize("blocking", [False, True], ids=["queued before", "arrived while the consumer waited"])
def test_a_claim_whose_reply_was_lost_dispatches_the_task_it_took(
    settings: Settings, store: TaskStore, blocking: bool
) -> None:
    dispatched: list[tuple[str, str]] = []
    consumer = Consumer(
        settings.model_copy(update={"consumer_block_seconds": 5.0}),
        _LosesOneReply(store.r, store.keys),
        lambda tid, tok, cid, fields: dispatched.append((tid, tok)),
    )
    if blocking:  # arrives while the consumer waits for work
        threading.Timer(0.2, submit, args=(store, 2)).start()
        assert consumer.run_once() is None, "woken by the new work: the next step claims it"
    else:
        submit(store, 2)
    with pytest.raises(redis.ConnectionError):
        consumer.run_once()
    [first] = store.inflight_ids(consumer.id)
    assert store.get(first).state == State.ACTIVE, "claimed, the reply lost"

    assert consumer.run_once() == first, "the same claim again: the task it took, not the next one"
    assert dispatched == [(first, store.get(first).attempt)]
    assert store.inflight_ids(consumer.id) == [first] and store.get(first).attempts == 1
    second = consumer.run_once()
    assert second not in (None, first) and store.inflight_count(consumer.id) == 2


def test_a_dispatch_names_its_attempt_and_keeps_the_text_out_of_celerys_headers(
    settings: Settings, store: TaskStore
) -> None:
    """Celery's headers are what its logs, task events and Flower show: the task's id, never a
    user's text (which only the message body carries, for the worker)."""
    settings = settings.model_copy(update={"celery_broker_db": 3})
    app = create_celery(settings)
    queue = Keys(settings.redis_key_prefix).dispatch_queue(settings.worker_id)
    broker = redis.Redis.from_url(settings.broker_url, decode_responses=True)
    task = store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="a private letter", max_retries=3))
    consumer = Consumer(settings, store, celery_dispatch(app, queue))
    try:
        assert consumer.run_once() == task.id
        message = json.loads(broker.rpop(queue) or "{}")
    finally:
        broker.delete(queue)
        broker.close()
    headers = message["headers"]
    token = store.get(task.id).attempt
    assert (headers["task"], headers["id"]) == ("asynctaskflow.run", token)
    assert task.id in headers["argsrepr"] and "private letter" not in json.dumps(headers)
    args = json.loads(base64.b64decode(message["body"]))[0]
    assert args[:3] == [task.id, token, consumer.id] and args[3]["content"] == "a private letter"


def _open(breaker: SharedBreaker) -> None:
    """Open the shared breaker as its failures would (fail_max 2 in these settings)."""
    with pytest.raises(LLMTransient):
        breaker.call(_fail)
    with pytest.raises(CircuitOpen):
        breaker.call(_fail)


def test_an_idle_consumer_takes_nothing_once_the_breaker_opened_during_its_wait(
    settings: Settings, store: TaskStore, redis_url: str
) -> None:
    """Issue 21, 5: an idle consumer blocked in Redis when the breaker opened took the next task
    0.5 s later. Woken by the task's arrival, it now asks the breaker again before claiming."""
    # A block far longer than the test: the wait can only end by the task's arrival.
    idle = settings.model_copy(update={"consumer_block_seconds": 60.0, "circuit_breaker_reset_timeout": 60})
    breaker = SharedBreaker(idle, redis.Redis.from_url(redis_url))
    dispatched: list[str] = []
    consumer = Consumer(idle, store, lambda tid, tok, cid, fields: dispatched.append(tid), gate=BreakerGate(breaker))
    outcome: list[str | None] = []
    waiting = threading.Thread(target=lambda: outcome.append(consumer.run_once()))
    waiting.start()
    wait_until(lambda: any(c.get("cmd") == "blpop" for c in store.r.client_list()), 60, what="the consumer waiting")
    _open(breaker)
    time.sleep(0.5)  # the gate's view of the breaker is at most 0.05 s old
    arrived = submit(store, 1)
    waiting.join(30)
    assert not waiting.is_alive() and outcome == [None], "woken by the task, and it did not claim it"

    [task_id] = arrived
    task = store.get(task_id)
    assert dispatched == [] and (task.state, task.attempts, task.retry_count) == (State.PENDING, 0, 0)
    assert queued(store.r, store.keys) == [task_id], "still in the queue"
    assert store.inflight_count(consumer.id) == 0
    assert [consumer.run_once() for _ in range(3)] == [None] * 3 and dispatched == [], "and stays there"
    breaker.close()
    assert consumer.run_once() == task_id and dispatched == [task_id]


class _Worker:
    """The worker's beat as a consumer reads it: a boot id, or None while no worker beats."""

    def __init__(self) -> None:
        self.boot: str | None = None

    def read(self) -> str | None:
        return self.boot


def test_no_work_is_taken_without_a_worker_and_a_lost_worker_gets_its_tasks_back(
    settings: Settings, store: TaskStore
) -> None:
    worker = _Worker()
    dispatched: list[str] = []
    busy = settings.model_copy(update={"worker_prefetch": 2})  # 2 threads + 2 prefetched
    consumer = Consumer(busy, store, lambda tid, tok, cid, fields: dispatched.append(tid),
                        rng=lambda: 0.99, worker=WorkerWatch(worker.read, grace=0, ttl=0))  # fmt: skip
    ids = submit(store, 5)
    assert consumer.run_once() is None and dispatched == [], "no worker yet: nothing taken"
    worker.boot = "host:1:aa"
    assert [consumer.run_once() for _ in range(5)] == [*ids[:4], None], "up to its 4 slots"

    worker.boot = "host:2:bb"  # killed and restarted between two looks
    assert consumer.run_once() == ids[2], "the new worker is alive: the oldest waiting task goes first"
    tasks = [store.get(tid) for tid in ids[:4]]
    assert [(t.retry_count, t.error_type) for t in tasks] == [(1, "worker_lost")] * 2 + [(0, "worker_lost")] * 2, \
        "the two that may have run spend a retry (as the reaper would); the two waiting ones do not"
    assert [t.state for t in tasks] == [State.PENDING, State.PENDING, State.ACTIVE, State.PENDING]
    assert queued(store.r, store.keys) == [ids[3], ids[4]], "in their order, at the head"
    assert queued(store.r, store.keys, "retry") == ids[:2]

    worker.boot = None
    assert consumer.run_once() is None
    assert store.inflight_count(consumer.id) == 0, "gone: what it held handed back, and nothing new taken"


def test_a_beat_missing_only_for_a_moment_is_no_lost_worker() -> None:
    """After a Redis restart every beat has expired; the live worker writes its own again within
    a beat interval. Missing for less than the grace, it is not lost; missing longer, it is."""
    worker = _Worker()
    watch = WorkerWatch(worker.read, grace=0.3, ttl=0)
    worker.boot = "host:1:aa"
    assert watch.check() == (True, False)
    worker.boot = None
    assert watch.check() == (False, False), "paused at once, not yet lost"
    worker.boot = "host:1:aa"
    assert watch.check() == (True, False), "the same worker beat again: nothing was lost"
    worker.boot = None
    assert watch.check() == (False, False)
    time.sleep(0.35)
    assert watch.check() == (False, True), "missing past the grace: lost, once"
    assert watch.check() == (False, False)
    worker.boot = "host:2:bb"
    assert watch.check() == (True, False), "a new worker after a lost one: nothing more to hand back"
    worker.boot = "host:3:cc"
    assert watch.check() == (True, True), "replaced without a gap: lost at once"


def test_two_workers_under_one_worker_id_are_no_endless_replacement() -> None:
    """A misconfiguration (two containers with one WORKER_ID): their beats alternate. The first
    change looks like a replacement; an id coming back shows it is not, and no more hand-backs."""
    worker = _Worker()
    watch = WorkerWatch(worker.read, grace=10, ttl=0)
    worker.boot = "host:1:aa"
    assert watch.check() == (True, False)
    worker.boot = "host:2:bb"
    assert watch.check() == (True, True)
    worker.boot = "host:1:aa"
    assert watch.check() == (True, False) and watch.shared
    worker.boot = "host:2:bb"
    assert watch.check() == (True, False)
