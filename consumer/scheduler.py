"""The scheduler: promotes due retries, folds the completions' tally into the figures, reaps
orphans, deletes finished tasks past retention and the owners' token counts of past days.
Safe with any number of replicas: each step is atomic in Redis, and polling is jittered."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from consumer.service import repeat, stop_on_signals
from core.logs import setup_logging
from core.redis import sync_client
from core.settings import Settings, get_settings
from core.shards import open_store
from core.states import State
from core.store import TaskStore

log = logging.getLogger("asynctaskflow.scheduler")

_RETAINED = (State.COMPLETED, State.FAILED, State.CANCELLED)


class Scheduler:
    def __init__(self, settings: Settings, store: TaskStore) -> None:
        self.settings = settings
        self.store = store
        self._next_reap = 0.0
        self._next_clean = 0.0
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.started_at = time.time()

    def promote_once(self) -> int:
        """Move every due retry to the retry list, a batch per atomic step."""
        batch = self.settings.scheduler_batch_size
        total = 0
        while (moved := self.store.promote_due(batch)) > 0:
            total += moved
            if moved < batch:
                break
        if total:
            log.info("promoted %d due retries", total)
        return total

    def adopt_once(self) -> int:
        """Move the ids a deployment from before priorities left in its single pending lists into
        the per-owner lists (priority 5 of their owner); nothing to do, one cheap step."""
        batch, total = self.settings.scheduler_batch_size, 0
        while (adopted := self.store.adopt_legacy(batch)) > 0:
            total += adopted
        if total:
            log.info("adopted %d ids queued before priorities into the per-owner lists", total)
        return total

    def reap_once(self) -> int:
        """Return orphaned work (dead consumers, expired leases) to the retry list.

        Not while Redis has been up for less than HEARTBEAT_TTL: heartbeats that expired while
        Redis itself was down prove nothing, and live consumers get the time to beat again."""
        if self.store.uptime_seconds() < self.settings.heartbeat_ttl:
            return 0
        recovered = self.store.recover_orphans(self.settings.task_lease_seconds, self.settings.scheduler_batch_size)
        if recovered:
            log.warning("recovered %d orphaned tasks", recovered)
        return recovered

    def clean_once(self) -> int:
        """Delete finished tasks past RESULT_TTL_SECONDS (with their history and index entries) and
        the oldest dead ones beyond DLQ_MAX_SIZE. Each call deletes at most SCHEDULER_BATCH_SIZE per
        state, so one round never holds Redis long; a backlog drains over the following rounds."""
        s = self.settings
        retention_ms = s.result_ttl_seconds * 1000
        deleted = sum(self.store.purge(state, retention_ms, None, s.scheduler_batch_size) for state in _RETAINED)
        deleted += self.store.purge(State.DLQ, 0, s.dlq_max_size, s.scheduler_batch_size)
        if deleted:
            log.info("deleted %d finished tasks past retention", deleted)
        return deleted

    def beat(self) -> None:
        """Tell the API's /health that a scheduler runs (lives for one HEARTBEAT_TTL)."""
        info = {"scheduler_id": self.id, "host": socket.gethostname(), "pid": os.getpid()}
        info |= {"started_at": int(self.started_at * 1000), "beat_at": int(time.time() * 1000)}
        self.store.beat_scheduler(info, self.settings.heartbeat_ttl)

    def run_once(self) -> None:
        """One round: promote and fold the completions' tally always; beat, adopt and reap every
        heartbeat interval; clean once a minute (sooner while a full batch was deleted, so a
        backlog of expired tasks drains), and then delete a page of past days' token counts."""
        self.promote_once()
        self.store.fold_tally()  # readers fold too: this keeps the tally short between reads
        now = time.monotonic()
        if now >= self._next_reap:
            self.beat()
            self.adopt_once()
            self.reap_once()
            self._next_reap = now + self.settings.heartbeat_interval
        if now >= self._next_clean:
            deleted = self.clean_once()
            self.store.prune_token_days(self.settings.scheduler_batch_size)
            self._next_clean = now + (0.0 if deleted >= self.settings.scheduler_batch_size else 60.0)


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level)
    scheduler = Scheduler(settings, open_store(settings, sync_client(settings)))
    stop = threading.Event()
    stop_on_signals(stop)
    log.info("scheduler started: every %.1fs", settings.scheduler_interval)
    repeat(scheduler.run_once, stop, pause=settings.scheduler_interval)
    log.info("scheduler stopped")


if __name__ == "__main__":
    main()
