"""The Celery worker's own heartbeat, for its consumer.

Why: when the worker runs as its own process (the Procfile, `make run`, systemd, a Kubernetes
sidecar), a worker killed on its own takes its prefetched and running attempts with it, while
its consumer's heartbeat stays alive, so the reaper would leave those tasks ACTIVE until their
lease ran out (630 s with the shipped settings). With this beat the consumer learns within
HEARTBEAT_TTL that its worker is gone, or was replaced (a new boot id), and hands the tasks back.

It starts when Celery says the worker is ready (so it also means "ready to take dispatches"),
and beats from a daemon thread every HEARTBEAT_INTERVAL.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from core.errors import RedisError
from core.redis import sync_client
from core.settings import Settings
from core.shards import open_store
from core.store import TaskStore

log = logging.getLogger("asynctaskflow.worker")


class WorkerBeat:
    """Beats `worker:celery:{WORKER_ID}` = this process's boot id, with a TTL, until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.boot = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.stopped = threading.Event()
        self._store: TaskStore | None = None

    def beat(self) -> None:
        if self._store is None:
            self._store = open_store(self.settings, sync_client(self.settings))
        self._store.beat_worker(self.settings.worker_id, self.boot, self.settings.heartbeat_ttl)

    def _loop(self) -> None:
        while True:
            try:
                self.beat()
            except RedisError as e:  # Redis away: the consumer pauses too; beat again when it is back
                log.warning("worker beat: Redis unavailable (%s)", type(e).__name__)
            if self.stopped.wait(self.settings.heartbeat_interval):
                return

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name="worker-beat", daemon=True)
        thread.start()
        log.info("worker %s ready: beating as %s", self.settings.worker_id, self.boot)
        return thread


def install(settings: Settings) -> WorkerBeat:
    """Beat from Celery's worker_ready until worker_shutdown (call before the worker starts)."""
    beat = WorkerBeat(settings)

    def started(**_: Any) -> None:
        beat.start()

    def stopping(**_: Any) -> None:
        beat.stopped.set()

    # weak=False: the receivers are closures that nothing else keeps alive.
    worker_ready.connect(started, weak=False)
    worker_shutdown.connect(stopping, weak=False)
    return beat
