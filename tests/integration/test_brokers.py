"""CELERY_BROKER_URL: Celery's broker is any kombu URL (issue 19, part 3). The whole path on real
processes with the broker in another Redis database named by URL, and with RabbitMQ (the one on
this machine's loopback port, when there is one: a user's machine has none, and the test says so)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import redis

from core.states import State
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_listens() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def _run_twenty(stack: Stack) -> None:
    ids = [stack.submit(f"[[tag:b{i}]] Through the broker {i}.") for i in range(20)]
    assert set(stack.wait_terminal(ids, timeout=120).values()) == {State.COMPLETED}
    assert [stack.task(task_id)["result"] for task_id in ids] == [f"summary:b{i}" for i in range(20)]
    celery = stack.http.get("/health/workers/diagnostics").json()["celery"]
    assert celery.get("answered") == 1, celery  # `inspect` reached the worker through the same broker
    stack.assert_nothing_left()


def test_a_redis_broker_named_by_url(make_stack: Callable[..., Stack], redis_url: str) -> None:
    server = redis_url.rsplit("/", 1)[0]
    stack = make_stack(CELERY_BROKER_URL=f"{server}/5").start_all()
    _run_twenty(stack)
    queue = stack.keys.dispatch_queue("*")
    in_url_db = redis.Redis.from_url(f"{server}/5", decode_responses=True)
    in_default_db = redis.Redis.from_url(f"{server}/3", decode_responses=True)
    assert any(queue.rstrip("*") in key for key in in_url_db.scan_iter(count=1000)), "kombu's keys are there"
    assert not any(queue.rstrip("*") in key for key in in_default_db.scan_iter(count=1000)), "not in CELERY_BROKER_DB"


@pytest.mark.skipif(not _rabbitmq_listens(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_rabbitmq_as_the_broker(make_stack: Callable[..., Stack]) -> None:
    _run_twenty(make_stack(CELERY_BROKER_URL=RABBITMQ).start_all())
