"""Logging for every process: one line per event, key facts first, secrets never passed in."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"

# Per-call or per-message INFO lines of libraries, kept out of the logs: httpx names every
# request URL; Celery's "received" and "succeeded" lines name its message id, not our task id,
# and repeat the runner's one line per attempt (they were a few % of the worker's CPU).
# Their warnings and errors still show.
QUIET_AT_INFO = ("httpx", "celery.worker.strategy", "celery.app.trace")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    for name in QUIET_AT_INFO:
        logging.getLogger(name).setLevel(logging.WARNING)
