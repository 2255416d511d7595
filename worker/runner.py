"""One attempt of one task: load it, run its handler behind the shared breaker, and commit
exactly one transition. Celery's task is a thin shell over `Runner.execute`."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time

from core.errors import LLMError, StaleAttempt, TaskNotFound
from core.keys import Keys
from core.policy import Outcome, RetryPolicy
from core.redis import Durability, sync_client
from core.settings import Settings
from core.states import State
from core.store import TaskStore, claimed_task
from core.task import Task
from worker.handlers import HANDLERS, Job
from worker.provider_state import PausableBreaker, ProviderPaused, ProviderRecorder
from worker.providers import Budget, LLMAccountProblem, Provider, Summary, build_provider
from worker.ratelimit import AttemptTokens, FleetRateLimit

log = logging.getLogger("asynctaskflow.worker")

# How stale the worker's view of the shared breaker may be (see worker/breaker.py); consumers
# look as often (consumer.BreakerGate).
BREAKER_READ_SECONDS = 0.05

# A prefetched attempt that waited longer than this since its claim reads its task again before
# the call: it may have been cancelled or taken back meanwhile (its report would be refused, but
# the call would be paid for).
RECHECK_AFTER_WAIT_MS = 1000


class Runner:
    """Everything an attempt needs, built once per worker process and shared by its threads."""

    def __init__(self, settings: Settings, provider: Provider | None = None) -> None:
        keys = Keys(settings.redis_key_prefix)
        self.settings = settings
        self.store = TaskStore(sync_client(settings, patient=True), keys, Durability(settings))
        self.breaker = PausableBreaker(settings, sync_client(settings, decode=False), BREAKER_READ_SECONDS)
        self.provider = provider or build_provider(settings)
        # The offline summarizer makes no network call: no rate limit, no call metrics.
        networked = self.provider.name != "offline"
        self.limit = FleetRateLimit(self.store, settings, enabled=networked)
        self.recorder = ProviderRecorder(self.store.r, keys, self.limit)
        if networked:
            self.provider.observer = self.recorder.record
        self.policy = RetryPolicy(
            settings.max_retries, settings.retry_backoff_base, settings.retry_backoff_max, settings.retry_after_max
        )

    def close(self) -> None:
        """At worker shutdown: write the last call metrics, close the provider's connections."""
        self.recorder.flush()
        self.provider.close()

    def execute(self, task_id: str, token: str, consumer_id: str, fields: dict[str, str] | None = None) -> str:
        """Run one attempt; returns what became of it (for logs and tests).

        `fields` are what the claim returned of the task (DISPATCH_FIELDS): with them the attempt
        starts without reading the task, a round trip and a tenth of the worker's CPU per task.
        Its report is still refused if the attempt went stale meanwhile (a cancel in the
        milliseconds since the claim). A message without them (from an older consumer) loads
        the task and skips a stale attempt before any call, as does an attempt that waited for
        a thread (WORKER_PREFETCH) long enough for a cancel to be likely."""
        task = _fresh_claim(task_id, token, consumer_id, fields) or self._load(task_id, token)
        if isinstance(task, str):
            return task
        try:
            return self._attempt(task, token, consumer_id)
        except StaleAttempt:
            log.info("task %s: result of stale attempt %s refused", task_id, token)
            return "stale"

    def _load(self, task_id: str, token: str) -> Task | str:
        """The task, or what became of the attempt when there is none to run: missing | stale."""
        try:
            task = self.store.get(task_id)
        except TaskNotFound:
            log.warning("task %s vanished before its attempt ran", task_id)
            return "missing"
        if task.state != State.ACTIVE or task.attempt != token:
            log.info("task %s: attempt %s is stale (state %s); skipped", task_id, token, task.state.value)
            return "stale"
        return task

    def _attempt(self, task: Task, token: str, consumer_id: str) -> str:
        started = time.monotonic()
        try:
            summary = self._run_handler(task, token)
        except StaleAttempt:
            raise  # cancelled or taken back meanwhile: nothing of ours to settle
        except LLMAccountProblem as error:
            return self._settle_failure(task, token, consumer_id, self._pause(error))
        except Exception as error:  # every failure is settled into a state, none escapes
            return self._settle_failure(task, token, consumer_id, error)
        self.store.complete(task.id, consumer_id, token, summary.text, summary.provider, summary.model, summary.usage)
        if summary.chunks:
            self.store.drop_chunks(task.id)
        log.info("task %s completed by %s in %.0f ms", task.id, summary.provider, (time.monotonic() - started) * 1e3)
        return "completed"

    def _run_handler(self, task: Task, token: str) -> Summary:
        """The handler behind the breaker, once the fleet's rate limit gave the first call a token:
        taken before the breaker is asked, since an attempt that ends throttled inside it would
        count as a success (and close a half-open breaker without any call)."""
        handler = HANDLERS.get(task.task_type)
        if handler is None:
            raise ValueError(f"no handler for task type {task.task_type!r}")
        tokens = AttemptTokens(self.limit)
        throttled = tokens.first()
        if throttled is not None:
            raise throttled
        return self.breaker.call(handler, self._job(task, token, tokens))

    def _job(self, task: Task, token: str, tokens: AttemptTokens) -> Job:
        deadline = time.monotonic() + self.settings.celery_task_soft_time_limit
        ttl_ms = self.settings.result_ttl_seconds * 1000
        return Job(
            task=task,
            provider=self.provider,
            budget=Budget(deadline, tokens.take),
            progress=lambda percent, step: self.store.set_progress(task.id, token, percent, step),
            saved=lambda: self.store.chunks(task.id),
            save=lambda field, value: self.store.save_chunk(task.id, token, field, value, ttl_ms),
        )

    def _pause(self, error: LLMError) -> ProviderPaused:
        """401/402: every call would fail alike, so pause them all (the shared breaker opens for
        PROVIDER_PAUSE_SECONDS) and give the task back to the queue instead of to the DLQ."""
        seconds = self.settings.provider_pause_seconds
        self.breaker.pause(seconds)
        self.recorder.paused(seconds, str(error))
        log.error("LLM calls paused for %gs: %s", seconds, error)
        return ProviderPaused(f"LLM calls paused for {seconds:g}s: {error}", retry_after=seconds)

    def _settle_failure(self, task: Task, token: str, consumer_id: str, error: Exception) -> str:
        policy = dataclasses.replace(self.policy, max_retries=task.max_retries)
        outcome, delay = policy.decide(error, task.retry_count, random.random())
        # Only our own errors name an error type: redis-py 8's carry an enum under the same name.
        error_type = error.error_type if isinstance(error, LLMError) else "internal"
        message = (str(error) or type(error).__name__)[:1000]
        if outcome == Outcome.DEFER:
            self.store.release(task.id, consumer_id, token, message, error_type)
            log.info("task %s: breaker open; back to the queue", task.id)
            return "released"
        if outcome in (Outcome.RETRY, Outcome.WAIT):
            spend = outcome == Outcome.RETRY
            self.store.schedule_retry(task.id, consumer_id, token, delay, message, error_type, spend)
            log.warning("task %s: %s (%s); %s in %.1fs", task.id, error_type, message,
                        "retry" if spend else "rate limited, next attempt", delay)
            return "scheduled"
        target = State.FAILED if outcome == Outcome.FAIL else State.DLQ
        self.store.fail(task.id, consumer_id, token, target, message, error_type)
        log.error("task %s: %s (%s); moved to %s", task.id, error_type, message, target.value)
        return target.value.lower()


def _fresh_claim(task_id: str, token: str, consumer_id: str, fields: dict[str, str] | None) -> Task | None:
    """The task as its claim returned it, unless there is no such claim or it is old enough
    (RECHECK_AFTER_WAIT_MS) that the task must be read again."""
    if fields is None:
        return None
    task = claimed_task(task_id, token, consumer_id, fields)
    return task if time.time() * 1000 - task.started_at <= RECHECK_AFTER_WAIT_MS else None


_runner: Runner | None = None
_runner_lock = threading.Lock()


def get_runner(settings: Settings) -> Runner:
    """The process's Runner, created on first use (after a prefork child forked)."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = Runner(settings)
        return _runner


def close_runner() -> None:
    """The process's Runner closed, if it was ever made (Celery's worker_shutdown signal)."""
    global _runner
    with _runner_lock:
        runner, _runner = _runner, None
    if runner is not None:
        runner.close()
