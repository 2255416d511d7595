"""Celery tasks: thin shells over `Runner.execute`."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_shutdown

from core.settings import get_settings
from worker.celery_app import RUN_TASK, celery_app
from worker.runner import close_runner, get_runner


@celery_app.task(name=RUN_TASK)
def run_task(task_id: str, token: str, consumer_id: str) -> None:
    """Run one attempt of `task_id`; the outcome is written to Redis, not returned."""
    get_runner(get_settings()).execute(task_id, token, consumer_id)


@worker_shutdown.connect
def _close_runner(**_: Any) -> None:
    close_runner()
