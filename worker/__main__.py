"""`python -m worker`: the Celery worker, configured from settings (pool, concurrency, queue)."""

from __future__ import annotations

import logging
import os
import warnings

from celery.exceptions import SecurityWarning

from core.keys import deployment_keys
from core.logs import setup_logging
from core.settings import get_settings
from worker import beat
from worker.celery_app import celery_app

log = logging.getLogger("asynctaskflow.worker")


def _privileges_note() -> None:
    """Celery warns over six lines when its worker runs as root or in the sudo/wheel group, which
    is how a developer's `make run` often runs it (in the images it runs as user 10001, and never
    warns). Our messages are JSON, never pickle, so the risk it warns about (a pickled message
    running code as root) does not apply; one line says so instead."""
    warnings.filterwarnings("ignore", category=SecurityWarning)
    if os.geteuid() == 0:
        log.warning("the Celery worker runs as root; it accepts JSON only, but a regular user is safer")


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level)
    _privileges_note()
    queue = deployment_keys(settings).dispatch_queue(settings.worker_id)
    beat.install(settings)  # tells the consumer this worker is ready, and later that it is gone
    celery_app.worker_main(
        [
            "worker",
            f"--pool={settings.celery_worker_pool}",
            f"--concurrency={settings.celery_worker_concurrency}",
            f"--queues={queue}",
            f"--hostname=worker@{settings.worker_id}",
            f"--loglevel={settings.log_level}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


if __name__ == "__main__":
    main()
