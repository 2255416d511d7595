"""The Celery application: transport only. Our Redis lists hold the truth; Celery carries one
dispatch from a consumer to the worker in the same container and keeps no results."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from celery import Celery

from core.keys import deployment_keys
from core.redis import celery_transport_options
from core.settings import Settings, get_settings

RUN_TASK = "asynctaskflow.run"


def broker_transport(broker_url: str) -> str | None:
    """Our Redis transports (no ack emulation: see worker/transport.py) for a Redis or Sentinel
    broker; None for any other (RabbitMQ…): kombu's own, from the URL's scheme."""
    scheme = urlsplit(broker_url.split(";", 1)[0]).scheme
    return {"redis": "Transport", "rediss": "Transport", "sentinel": "SentinelTransport"}.get(scheme)


def create_celery(settings: Settings) -> Celery:
    app = Celery("asynctaskflow", broker=settings.broker_url, include=["worker.tasks"])
    if transport := broker_transport(settings.broker_url):
        app.conf.broker_transport = f"worker.transport:{transport}"
    app.conf.update(
        broker_transport_options=celery_transport_options(settings),
        # Reconnect for ever, never stop the worker: a Redis failover or restart is a pause.
        broker_connection_max_retries=None,
        # Acked when the attempt starts: a worker that dies mid-attempt loses the message, and
        # the lease reaper (which owns recovery) gives the task back; Celery's own redelivery
        # would only bring a stale copy later.
        task_acks_late=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,  # attempts run on through a Redis restart
        task_ignore_result=True,
        result_backend=None,
        # The consumer decides how many tasks the worker holds (WORKER_PREFETCH beyond its
        # threads); Celery's own reservation only has to let them all in.
        worker_prefetch_multiplier=math.ceil(settings.consumer_capacity / settings.celery_worker_concurrency),
        task_time_limit=settings.celery_task_time_limit,
        task_soft_time_limit=settings.celery_task_soft_time_limit,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
        worker_max_memory_per_child=settings.worker_max_memory_per_child or None,
        task_default_queue=deployment_keys(settings).dispatch_queue(settings.worker_id),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Task events let `celery flower` / `celery events` follow our workers (remote control,
        # so `celery inspect`, works either way). Off by default as in Celery (its `-E`): they
        # cost about a fifth of the worker's CPU per task.
        # No `task-sent` events: Flower learns of each task from the worker's `task-received`,
        # and the consumer's publish would cost a round trip per task for nothing.
        worker_send_task_events=settings.celery_send_task_events,
    )
    return app


celery_app = create_celery(get_settings())
