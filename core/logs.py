"""Logging for every process: one line per event, key facts first, secrets never passed in."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    # httpx logs every request URL at INFO; keep the per-call noise out of the logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
