"""One attempt of one task: load it, run its handler behind the shared breaker, and commit
exactly one transition. Celery's task is a thin shell over `Runner.execute`."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time

import tasktypes
from core.errors import (
    LLMAccountProblem,
    LLMError,
    LLMInputRejected,
    LLMRateLimited,
    StaleAttempt,
    TaskNotFound,
    UnknownTaskType,
)
from core.policy import Outcome, RateLimitStreak, RetryPolicy
from core.redis import Durability, sync_client
from core.settings import Settings
from core.shards import open_store
from core.states import State
from core.store import claimed_task
from core.task import Task
from tasktypes.base import Answer, Job, TaskType
from worker.provider_state import PausableBreaker, ProviderPaused, ProviderRecorder
from worker.providers import Budget, CallRecord, Provider, build_provider
from worker.ratelimit import AttemptTokens, FleetRateLimit

log = logging.getLogger("asynctaskflow.worker")

# How stale the worker's view of the shared breaker may be (see core/breaker.py); consumers
# look as often (consumer.BreakerGate).
BREAKER_READ_SECONDS = 0.05

# A prefetched attempt that waited longer than this since its claim reads its task again before
# the call: it may have been cancelled or taken back meanwhile (its report would be refused, but
# the call would be paid for).
RECHECK_AFTER_WAIT_MS = 1000


class Runner:
    """Everything an attempt needs, built once per worker process and shared by its threads."""

    def __init__(self, settings: Settings, provider: Provider | None = None) -> None:
        self.settings = settings
        self.store = open_store(settings, sync_client(settings, patient=True), Durability(settings))
        self.breaker = PausableBreaker(settings, sync_client(settings, decode=False), BREAKER_READ_SECONDS)
        self.provider = provider or build_provider(settings)
        tasktypes.load(settings)
        # The offline provider makes no network call (each type gives its own offline answer): no
        # rate limit, no call metrics; its successes are still noted as the provider's last success.
        self.offline = self.provider.name == "offline"
        networked = not self.offline
        self.limit = FleetRateLimit(self.store, settings, enabled=networked)
        self.recorder = ProviderRecorder(self.store.provider, self.limit)
        if networked:
            self.provider.observer = self.recorder.record
        self.policy = RetryPolicy(
            settings.max_retries, settings.retry_backoff_base, settings.retry_backoff_max, settings.retry_after_max,
            settings.rate_limit_backoff_base, settings.rate_limit_backoff_max, settings.rate_limit_jitter,
            settings.rate_limit_max_wait,
        )  # fmt: skip
        # The guard against a configuration error that looks like bad input (networked only: the
        # offline answers' refusals are about the text).
        self.guard = settings.input_rejected_guard if networked else 0

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
            answer = self._run_handler(task, token)
        except StaleAttempt:
            raise  # cancelled or taken back meanwhile: nothing of ours to settle
        except LLMAccountProblem as error:
            return self._settle_failure(task, token, consumer_id, self._pause(error))
        except Exception as error:  # every failure is settled into a state, none escapes
            return self._settle_failure(task, token, consumer_id, error)
        self.store.complete(task.id, consumer_id, token, answer.result, answer.provider, answer.model, answer.usage)
        if answer.pieces:
            self.store.drop_chunks(task.id)
        log.info("task %s completed by %s in %.0f ms", task.id, answer.provider, (time.monotonic() - started) * 1e3)
        return "completed"

    def _run_handler(self, task: Task, token: str) -> Answer:
        """The type's work behind the breaker, once the fleet's rate limit gave the first call a
        token: taken before the breaker is asked, since an attempt that ends throttled inside it
        would count as a success (and close a half-open breaker without any call). Offline, the
        type's own offline answer runs instead."""
        task_type = tasktypes.get(task.task_type)
        if task_type is None:
            names = ", ".join(t.name for t in tasktypes.all_types())
            raise UnknownTaskType(f"no task type {task.task_type!r} in this worker (it has {names}): "
                                  "add its module to TASK_TYPE_MODULES, then retry the task")  # fmt: skip
        tokens = AttemptTokens(self.limit)
        throttled = tokens.first()
        if throttled is not None:
            raise throttled
        job = self._job(task, token, tokens, task_type)
        if not self.offline:
            return self.breaker.call(task_type.run, job)
        answer: Answer = self.breaker.call(task_type.run_offline, job)
        self.recorder.record_local(CallRecord(answer.model))
        return answer

    def _job(self, task: Task, token: str, tokens: AttemptTokens, task_type: TaskType) -> Job:
        budget = Budget(time.monotonic() + self.settings.celery_task_soft_time_limit, tokens.take)
        ttl_ms = self.settings.result_ttl_seconds * 1000
        return Job(
            task_id=task.id,
            input=task_type.input_of(task.content, json.loads(task.params) if task.params else {}),
            settings=self.settings,
            complete=lambda request: self.provider.complete(request, budget),
            context_chars=self.provider.context_chars,
            progress=lambda percent, step: self.store.set_progress(task.id, token, percent, step),
            saved=lambda: self.store.chunks(task.id),
            save=lambda field, value: self.store.save_chunk(task.id, token, field, value, ttl_ms),
        )

    def _pause(self, error: LLMError) -> ProviderPaused:
        """A refused key, spent credits, or the guard: every call would fail alike, so pause them
        all (the shared breaker opens for PROVIDER_PAUSE_SECONDS) and give the task back to the
        queue instead of to the DLQ."""
        seconds = self.settings.provider_pause_seconds
        self.breaker.pause(seconds)
        self.recorder.paused(seconds, str(error))
        log.error("LLM calls paused for %gs: %s", seconds, error)
        return ProviderPaused(f"LLM calls paused for {seconds:g}s: {error}", retry_after=seconds)

    def _settle_failure(self, task: Task, token: str, consumer_id: str, error: Exception) -> str:
        policy = dataclasses.replace(self.policy, max_retries=task.max_retries)
        outcome, delay = policy.decide(error, task.retry_count, random.random(), self._streak(task.id, error))
        if outcome == Outcome.DEAD and _from_provider(error):
            limit = self.settings.rate_limit_max_wait
            error = LLMRateLimited(f"still rate limited after RATE_LIMIT_MAX_WAIT ({limit:g}s) of 429s: {error}")
        if outcome == Outcome.FAIL and isinstance(error, LLMInputRejected) and error.guarded:
            run = self._rejection_run(task.id, _message(error))
            if run:
                error, outcome, delay = self._guard_pause(task.id, error, run), Outcome.DEFER, 0.0
        return self._commit(task, token, consumer_id, error, outcome, delay)

    def _commit(
        self, task: Task, token: str, consumer_id: str, error: Exception, outcome: Outcome, delay: float
    ) -> str:
        """The one transition the decided outcome means."""
        # Only our own errors name an error type: redis-py 8's carry an enum under the same name.
        error_type = error.error_type if isinstance(error, LLMError) else "internal"
        message = _message(error)
        if outcome == Outcome.DEFER:
            self.store.release(task.id, consumer_id, token, message, error_type)
            log.info("task %s: %s; back to the queue", task.id, error_type)
            return "released"
        if outcome in (Outcome.RETRY, Outcome.WAIT):
            spend = outcome == Outcome.RETRY
            streak = "reset" if spend else "grow" if _from_provider(error) else "keep"
            self.store.schedule_retry(task.id, consumer_id, token, delay, message, error_type, spend, streak)
            log.warning("task %s: %s (%s); %s in %.1fs", task.id, error_type, message,
                        "retry" if spend else "rate limited, next attempt", delay)  # fmt: skip
            return "scheduled"
        target = State.FAILED if outcome == Outcome.FAIL else State.DLQ
        self.store.fail(task.id, consumer_id, token, target, message, error_type)
        log.error("task %s: %s (%s); moved to %s", task.id, error_type, message, target.value)
        return target.value.lower()

    def _streak(self, task_id: str, error: Exception) -> RateLimitStreak:
        """The task's provider 429s in a row before this attempt (read only after another one)."""
        if not _from_provider(error):
            return RateLimitStreak()
        count, since_ms = self.store.rate_limit_streak(task_id)
        return RateLimitStreak(count, max(0.0, time.time() - since_ms / 1000) if count else 0.0)

    def _rejection_run(self, task_id: str, message: str) -> list[str]:
        """The tasks of a run of INPUT_REJECTED_GUARD refusals with this same message, once the run
        is that long (then it starts again); [] before."""
        if not self.guard:
            return []
        run = self.store.note_rejection(task_id, message)
        if len(run) < self.guard:
            return []
        self.store.end_rejection_run()
        return run

    def _guard_pause(self, task_id: str, error: LLMError, run: list[str]) -> ProviderPaused:
        """Pause every call, then give back the run's tasks that were already FAILED: a provider
        that refuses every input alike is misconfigured, and their input may well be fine."""
        reason = (f"INPUT_REJECTED_GUARD: {len(run)} tasks in a row refused with the same message, "
                  f"taken for a configuration problem: {error}")  # fmt: skip
        paused = self._pause(LLMInputRejected(reason))
        requeued = [other for other in run if other != task_id and self.store.requeue_failed(other)]
        log.error("task %s: input-rejected guard tripped; tasks %s back to the queue", task_id, requeued)
        return paused


def _message(error: Exception) -> str:
    return (str(error) or type(error).__name__)[:1000]


def _from_provider(error: Exception) -> bool:
    """A 429 from the provider (not the fleet's own limit): the task's waits grow with each."""
    return isinstance(error, LLMRateLimited) and error.from_provider


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
