"""`python -m worker`: the Celery worker, configured from settings (pool, concurrency, queue)."""

from __future__ import annotations

from core.keys import Keys
from core.logs import setup_logging
from core.settings import get_settings
from worker import beat
from worker.celery_app import celery_app


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level)
    queue = Keys(settings.redis_key_prefix).dispatch_queue(settings.worker_id)
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
