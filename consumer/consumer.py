"""The consumer: takes task ids from the pending lists and dispatches them to the Celery worker
in the same container.

The hand-off is crash-safe: the id moves from its pending list into this consumer's own in-flight
list in one Redis step (`claim_task`), so a crash at any instant leaves it where the reaper finds
it. While there is nothing to take, the consumer blocks in Redis on a wake-up mark (BLPOP) that
every step adding pending work pushes: no polling, and nothing taken out of a queue meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from core.errors import AsyncTaskFlowError
from core.policy import retry_share
from core.settings import Settings
from core.store import TaskStore, new_token

log = logging.getLogger("asynctaskflow.consumer")

# (task_id, attempt token, consumer id, what the claim returned of the task: DISPATCH_FIELDS)
Dispatch = Callable[[str, str, str, dict[str, str]], None]

# How long to wait before looking again when the worker is full (its threads and WORKER_PREFETCH)
# or the breaker is open.
_FULL_WAIT = 0.005
_PAUSED_WAIT = 0.25
# How often the retry backlog, which the share taken from retries follows, is read.
_BACKLOG_READ_SECONDS = 1.0


class BreakerGate:
    """What the consumer may do under the shared breaker: 'closed' (take work), 'probe' (one task
    at a time, to test the provider), 'open' (take nothing). Read at most every `ttl` seconds."""

    def __init__(self, breaker: Any, ttl: float = 0.05) -> None:
        self._breaker = breaker
        self._ttl = ttl
        self._state = "closed"
        self._read_at = 0.0

    def state(self) -> str:
        now = time.monotonic()
        if now - self._read_at >= self._ttl:
            self._state = self._read()
            self._read_at = now
        return self._state

    def _read(self) -> str:
        raw = self._breaker.state
        if raw == "closed":
            return "closed"
        # half-open: a trial call is under way; open: one is due once the reset timeout passed.
        return "probe" if raw == "half-open" or self._breaker.seconds_left() == 0.0 else "open"


class WorkerWatch:
    """Is this container's Celery worker there, and still the one this consumer dispatched to?
    `read` returns the worker's boot id (None while none beats); read at most every `ttl` s.

    A new boot id means the worker was replaced: lost at once. A missing beat means lost only
    once it stayed missing for `grace` seconds of successful reads: after a Redis restart longer
    than HEARTBEAT_TTL every beat has expired, and a live worker needs a beat interval (and a
    reconnect) to write its own again; taking that for a death would run its attempts twice.

    A boot id seen before coming back means two workers beat under one WORKER_ID (a
    misconfiguration: they also share a queue); a change of id then proves nothing, and only a
    missing beat counts, instead of a hand-back at every look."""

    def __init__(self, read: Callable[[], str | None], grace: float, ttl: float = 0.25) -> None:
        self._read = read
        self._grace = grace
        self._ttl = ttl
        self._seen: str | None = None
        self._alive = False
        self._read_at = -ttl
        self._missing_since: float | None = None
        self._boots: set[str] = set()
        self.shared = False  # two workers beat under one WORKER_ID

    def check(self) -> tuple[bool, bool]:
        """(alive, lost): `alive` while a worker beats; `lost` once, when the worker seen before
        stopped beating or another took its place (what was dispatched to it is gone with it)."""
        now = time.monotonic()
        if now - self._read_at < self._ttl:
            return self._alive, False
        self._read_at = now
        boot = self._read()  # a RedisError leaves everything as it was: an outage proves nothing
        if boot is not None:
            changed = self._seen is not None and boot != self._seen
            if changed and boot in self._boots and not self.shared:
                self.shared = True
                log.error("two Celery workers beat as this container's WORKER_ID: give each its own")
            self._boots.add(boot)
            self._seen, self._alive, self._missing_since = boot, True, None
            return True, changed and not self.shared
        self._alive = False
        self._missing_since = self._missing_since if self._missing_since is not None else now
        lost = self._seen is not None and now - self._missing_since >= self._grace
        if lost:
            self._seen = None
        return False, lost


class Consumer:
    """One consumer per worker container; `run_once` takes and dispatches at most one task."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        dispatch: Dispatch,
        gate: BreakerGate | None = None,
        rng: Callable[[], float] = random.random,
        worker: WorkerWatch | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.dispatch = dispatch
        self.gate = gate
        self.worker = worker
        self.rng = rng
        self.id = f"{settings.worker_id}:{os.getpid()}:{secrets.token_hex(3)}"
        self.capacity = settings.consumer_capacity
        self.ratio = settings.retry_ratio
        self.taken = {"primary": 0, "retry": 0}
        self.started_at = time.time()
        self._inflight_estimate = 0  # an upper bound: completions only lower the real count
        self._undispatched: list[tuple[str, str]] = []  # claimed, but the broker refused them
        self._claim_token: str | None = None  # the token of a claim not yet answered
        self._backlog_read_at = -math.inf  # when the retry backlog was last read (monotonic)

    # --- one iteration ------------------------------------------------------------------------
    def run_once(self) -> str | None:
        """Take one task if the worker has a free slot and the breaker allows; dispatch it.
        Returns the task id, or None when nothing was taken (full, paused, idle or skipped)."""
        self._release_undispatched()
        if not self._worker_ready() or self._paused():
            time.sleep(_PAUSED_WAIT)
            return None
        if not self._has_free_slot():
            time.sleep(_FULL_WAIT)
            return None
        # Kept until a claim answers: a claim whose reply was lost, sent again under the same
        # token, returns the task it took (claim_task.lua), which would otherwise sit ACTIVE in
        # flight with no attempt running until its lease ran out.
        token = self._claim_token = self._claim_token or new_token()
        self._adapt_ratio()
        claim = self.store.claim(self.id, token, prefer_retry=self.rng() < self.ratio)
        self._claim_token = None
        if claim.status == "empty":
            # Woken by new work (or after CONSUMER_BLOCK_SECONDS), the next iteration asks the
            # worker and the breaker again before it claims.
            self.store.wait_for_work(self.settings.consumer_block_seconds, self.id)
            return None
        if claim.status != "ok":
            return None
        self._inflight_estimate += 1
        self.taken["retry" if claim.source == "retry" else "primary"] += 1
        try:
            self.dispatch(claim.task_id, token, self.id, claim.fields or {})
        except Exception as e:  # Celery's broker is unreachable: this attempt never started
            log.warning("task %s: dispatch failed (%s); it goes back to the queue", claim.task_id, e)
            self._undispatched.append((claim.task_id, token))
            return None
        log.debug("task %s dispatched (attempt %s)", claim.task_id, token)
        return claim.task_id

    def _worker_ready(self) -> bool:
        """True while this container's Celery worker beats. When the worker dispatched to is
        gone or was replaced, what it held is lost with it (its prefetched messages too): hand
        those tasks back now rather than leave them ACTIVE until their lease runs out."""
        if self.worker is None:
            return True
        alive, lost = self.worker.check()
        if lost:
            self.worker_lost()
        return alive

    def worker_lost(self) -> None:
        """Give back every task dispatched to a worker that is gone. The worker starts attempts in
        dispatch order on its CELERY_WORKER_CONCURRENCY threads, so only the oldest that many
        tasks still in flight can have reached the LLM: those are recovered as the reaper would
        (a retry spent, so a task that kills its worker every time still ends in the DLQ); the
        rest were only waiting and go back to the head of the queue, spending nothing."""
        reason = "the Celery worker of this consumer stopped or was replaced"
        ids = self.store.inflight_ids(self.id)  # oldest claim first
        running = self.settings.celery_worker_concurrency
        recovered = sum(self.store.recover(tid, self.id, "", reason) in ("requeued", "dead") for tid in ids[:running])
        # Newest first: each goes to the head of the queue, so they end there in their own order.
        released = sum(self._hand_back(tid, reason, "worker_lost") for tid in reversed(ids[running:]))
        self._inflight_estimate = 0
        log.warning("consumer %s: its worker is gone or was replaced; %d task(s) that may have run recovered, "
                    "%d waiting task(s) handed back unspent", self.id, recovered, released)  # fmt: skip

    def _release_undispatched(self) -> None:
        """Put tasks whose dispatch failed back at the head of the queue, spending no retry."""
        while self._undispatched:
            task_id, token = self._undispatched[0]
            with contextlib.suppress(AsyncTaskFlowError):  # reaped or deleted meanwhile: nothing to put back
                self.store.release(task_id, self.id, token, "dispatch to the worker failed", "dispatch_failed")
            self._undispatched.pop(0)

    def _has_free_slot(self) -> bool:
        if self._inflight_estimate < self.capacity:
            return True
        self._inflight_estimate = self.store.inflight_count(self.id)
        return self._inflight_estimate < self.capacity

    def _paused(self) -> bool:
        if self.gate is None:
            return False
        state = self.gate.state()
        if state == "probe":
            return self.store.inflight_count(self.id) > 0
        return state == "open"

    def _adapt_ratio(self) -> None:
        """Follow the retry pressure, read at most every _BACKLOG_READ_SECONDS: a backlog moves
        slowly, and a read per claim cost Redis about 5 % of the claim itself."""
        now = time.monotonic()
        if now < self._backlog_read_at + _BACKLOG_READ_SECONDS:
            return
        self._backlog_read_at = now
        s = self.settings
        backlog = self.store.retry_backlog()
        self.ratio = retry_share(s.retry_ratio, s.retry_ratio_floor, backlog, s.retry_pressure_threshold)

    # --- heartbeat ----------------------------------------------------------------------------
    def heartbeat_info(self) -> dict[str, Any]:
        return {
            "consumer_id": self.id,
            "worker_id": self.settings.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": self.settings.celery_worker_concurrency,
            "inflight": self.store.inflight_count(self.id),
            "retry_ratio": round(self.ratio, 3),
            "breaker": self.gate.state() if self.gate else "closed",
            "taken": dict(self.taken),
            "started_at": int(self.started_at * 1000),
            "beat_at": int(time.time() * 1000),
        }

    def beat(self) -> None:
        self.store.beat(self.id, self.heartbeat_info(), self.settings.heartbeat_ttl)

    # --- shutdown -----------------------------------------------------------------------------
    def drain(self, grace: float, on_leave: Callable[[], object] = lambda: None) -> int:
        """Wait up to `grace` seconds for dispatched tasks to finish, then hand back the rest at
        once, spending no retry (not after the heartbeat expires); late results of those are
        refused by token. `on_leave` runs just before the heartbeat is removed (it stops the
        heartbeat thread). Returns how many were handed back."""
        deadline = time.monotonic() + grace
        while self.store.inflight_count(self.id) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._release_undispatched()
        reason = "consumer stopped before the task finished"
        # Newest first: each goes to the head of the queue, so they end there in their own order.
        returned = sum(self._hand_back(task_id, reason) for task_id in reversed(self.store.inflight_ids(self.id)))
        on_leave()
        self.store.leave(self.id)
        return returned

    def _hand_back(self, task_id: str, reason: str, error_type: str = "shutdown") -> bool:
        """Release one of our tasks to the head of the queue, spending no retry (its attempt was
        cut short by us, or never started)."""
        try:
            self.store.release(task_id, self.id, self.store.get(task_id).attempt, reason, error_type)
        except AsyncTaskFlowError:  # not ours any more, or never claimed: the general sweep decides
            return self.store.recover(task_id, self.id, "", reason) == "requeued"
        log.info("task %s handed back: %s", task_id, reason)
        return True
