"""Celery tasks: thin shells over `Runner.execute`."""

from __future__ import annotations

import gc
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from core.settings import get_settings
from worker.celery_app import RUN_TASK, celery_app
from worker.runner import close_runner, get_runner


@celery_app.task(name=RUN_TASK)
def run_task(task_id: str, token: str, consumer_id: str, fields: dict[str, str] | None = None) -> None:
    """Run one attempt of `task_id` (`fields`: what its claim returned of it); the outcome is
    written to Redis, not returned."""
    get_runner(get_settings()).execute(task_id, token, consumer_id, fields)


@worker_shutdown.connect
def _close_runner(**_: Any) -> None:
    close_runner()


@worker_ready.connect
def _freeze_startup_objects(**_: Any) -> None:
    """What exists once the worker is ready lives as long as the process: frozen out of the
    collector's reach, a full collection no longer walks it. Each took 15–65 ms here, a stall of
    every thread, a few times in ten seconds at 300 tasks/s."""
    gc.freeze()
