"""Celery tasks: thin shells over `Runner.execute`.

What became of the attempt is also told to Celery, so that its task events (Flower, `celery
events`) show the truth: an attempt that ended FAILED or DLQ is a failed Celery task, one that was
rescheduled or given back to the queue a retried one, and only a completed (or a stale, skipped)
attempt a success. Both are expected outcomes: `AttemptFailed` is in the task's `throws`, so the
worker logs it at INFO without a traceback, and a raised `Retry` is logged as a retry, also
without one. Celery's `Retry` is raised, not `self.retry()`: our scheduler owns the retry, and
Celery must not send the message again.
"""

from __future__ import annotations

import gc
from typing import Any

from celery.exceptions import Retry
from celery.signals import worker_ready, worker_shutdown

from core.errors import AsyncTaskFlowError
from core.settings import get_settings
from worker.celery_app import RUN_TASK, celery_app
from worker.runner import close_runner, get_runner

FAILED = frozenset({"failed", "dlq"})  # Runner.execute's outcomes that end the task unsuccessfully
RESCHEDULED = frozenset({"scheduled", "released"})  # … and those that leave it for a later attempt


class AttemptFailed(AsyncTaskFlowError):
    """The attempt ended its task FAILED or DLQ (the reason is the task's `last_error`)."""


class AttemptRescheduled(AsyncTaskFlowError):
    """The attempt left its task for a later one: SCHEDULED, or back in the queue."""


@celery_app.task(name=RUN_TASK, throws=(AttemptFailed,))
def run_task(task_id: str, token: str, consumer_id: str, fields: dict[str, str] | None = None) -> str:
    """Run one attempt of `task_id` (`fields`: what its claim returned of it); the outcome is
    written to Redis, and told to Celery's events as above."""
    outcome = get_runner(get_settings()).execute(task_id, token, consumer_id, fields)
    report(task_id, outcome)
    return outcome


def report(task_id: str, outcome: str) -> None:
    """Raise what Celery should record for `outcome` (nothing for a completed attempt)."""
    if outcome in FAILED:
        raise AttemptFailed(f"task {task_id}: attempt ended {outcome.upper()}")
    if outcome in RESCHEDULED:
        reason = AttemptRescheduled(f"task {task_id}: attempt {outcome}")
        raise Retry(f"{outcome} by AsyncTaskFlow's scheduler", exc=reason)


@worker_shutdown.connect
def _close_runner(**_: Any) -> None:
    close_runner()


@worker_ready.connect
def _freeze_startup_objects(**_: Any) -> None:
    """What exists once the worker is ready lives as long as the process: frozen out of the
    collector's reach, a full collection no longer walks it. Each took 15–65 ms here, a stall of
    every thread, a few times in ten seconds at 300 tasks/s."""
    gc.freeze()
