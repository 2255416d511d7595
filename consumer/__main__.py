"""`python -m consumer`: one consumer per worker container, dispatching to its Celery worker.
(`python -m worker.container` runs the same `serve` with the Celery worker as its child.)"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from celery import Celery

from consumer.consumer import BreakerGate, Consumer, Dispatch, WorkerWatch
from consumer.service import every, repeat, stop_on_signals
from core.breaker import SharedBreaker
from core.errors import RedisError
from core.keys import deployment_keys
from core.logs import setup_logging
from core.redis import sync_client
from core.settings import Settings, get_settings
from core.shards import open_store
from worker.celery_app import RUN_TASK, celery_app

log = logging.getLogger("asynctaskflow.consumer")


def celery_dispatch(app: Celery, queue: str) -> Dispatch:
    """One Celery message per attempt, its Celery id the attempt token. Its repr (the headers
    that Celery's logs, task events and Flower show) names the task, never its text: Celery
    would otherwise copy up to 1 KiB of a user's content there, at a tenth of the consumer's CPU
    per dispatch."""

    def dispatch(task_id: str, token: str, consumer_id: str, fields: dict[str, str]) -> None:
        argsrepr = f"({task_id!r}, {token!r}, {consumer_id!r})"
        args = [task_id, token, consumer_id, fields]
        app.send_task(RUN_TASK, args=args, queue=queue, task_id=token, argsrepr=argsrepr, kwargsrepr="{}")

    return dispatch


def serve(settings: Settings, stop: threading.Event, worker_died: Callable[[], bool] = lambda: False) -> None:
    """Take and dispatch tasks until `stop` is set, then drain: wait up to CONSUMER_SHUTDOWN_GRACE
    for the tasks in flight, and hand back the rest. When `worker_died()` says the worker is
    already gone (the container's supervisor saw it exit), what it held is handed back at once,
    as when the worker's beat stops (Consumer.worker_lost)."""
    keys = deployment_keys(settings)
    store = open_store(settings, sync_client(settings, blocking_seconds=settings.consumer_block_seconds))
    queue = keys.dispatch_queue(settings.worker_id)
    gate = BreakerGate(SharedBreaker(settings, sync_client(settings, decode=False)))
    # Two beat intervals of grace: after a Redis restart the worker needs one to beat again.
    worker = WorkerWatch(lambda: store.worker_beat(settings.worker_id), grace=2 * settings.heartbeat_interval)
    consumer = Consumer(settings, store, celery_dispatch(celery_app, queue), gate, worker=worker)
    repeat(consumer.beat, stop, once=True)  # registered before the first task can be moved in flight
    # The per-key limits its claims enforce are this consumer's settings (API_KEY_LIMITS).
    repeat(lambda: store.set_limits(settings.limit_fields), stop, once=True)
    # The heartbeat outlives the fetch loop: while the consumer drains, its tasks are still its
    # own, and an expired heartbeat would let the reaper take them (spending a retry each).
    left = threading.Event()
    beating = every(settings.heartbeat_interval, consumer.beat, left, "heartbeat")

    def stop_beating() -> None:  # and wait for a beat under way, so none lands after we left
        left.set()
        beating.join(settings.redis_socket_timeout + 1)

    log.info("consumer %s started: queue %s, %d slots", consumer.id, queue, consumer.capacity)
    repeat(consumer.run_once, stop)
    seconds = settings.consumer_shutdown_grace
    try:
        if worker_died():  # a dead worker finishes nothing: no grace to wait for
            consumer.worker_lost()
            seconds = 0.0
        returned = consumer.drain(seconds, on_leave=stop_beating)
    except RedisError:
        log.warning("consumer %s: Redis away at shutdown; the reaper recovers its tasks", consumer.id)
        return
    log.info("consumer %s stopped; %d unfinished task(s) handed back", consumer.id, returned)


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level)
    stop = threading.Event()
    stop_on_signals(stop)
    serve(settings, stop)


if __name__ == "__main__":
    main()
