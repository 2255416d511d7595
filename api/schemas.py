"""Request and response bodies. Timestamps are epoch milliseconds; "not yet" is null, never 0."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

import tasktypes
from core.states import State, actions_for
from core.task import Task
from tasktypes.base import TaskType


class ErrorBody(BaseModel):
    """Every error response: a stable `code` to branch on and a `message` for people."""

    code: str = Field(examples=["task_not_found"])
    message: str


class TaskAccepted(BaseModel):
    """Reply to a submit: the task is stored and queued; poll the `Location` header for its outcome.
    A submit that repeats an `Idempotency-Key` gets the task the first one created, in its state now."""

    task_id: str
    task_type: str
    state: State
    created_at: int


class BulkAccepted(BaseModel):
    """Reply to a bulk submit: one entry per item, in the order given."""

    items: list[TaskAccepted]


class Usage(BaseModel):
    """Tokens the provider reported for the answering call."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(BaseModel):
    """Milliseconds between the task's timestamps; null until both ends exist."""

    queued_ms: int | None = Field(description="From creation to the start of the last attempt.")
    run_ms: int | None = Field(description="Run time of the last attempt, once finished.")
    total_ms: int | None = Field(description="From creation to the end, once finished.")


class HistoryEntry(BaseModel):
    """One state change of a task's audit trail; failed attempts carry their error."""

    at: int
    from_state: str = Field(alias="from", description="'' for the creation.")
    to: str
    worker: str | None = None
    error: str | None = None
    error_type: str | None = None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class TaskPublic(BaseModel):
    """A task as clients see it: the attempt token and other internals stay private."""

    task_id: str
    task_type: str
    state: State
    priority: int = Field(description="0-9: pending work runs by priority, lower first; 5 when submitted without one.")
    content: str
    params: dict[str, Any] | None = Field(description="The type's other input fields, as submitted.")
    result: str | dict[str, Any] | list[Any] | None = Field(
        description="Once COMPLETED: text, or for a type whose result is JSON (see /api/v1/task-types) the JSON itself."
    )
    provider: str | None
    retry_count: int
    max_retries: int
    last_error: str | None
    error_type: str | None
    worker: str | None = Field(description="Consumer that holds or last held the task.")
    created_at: int | None
    updated_at: int | None
    started_at: int | None
    finished_at: int | None
    due_at: int | None = Field(description="When a SCHEDULED retry becomes due.")
    attempts: int = Field(description="Attempts started so far (each claim by a consumer).")
    progress: int = Field(description="0-100, reported by the running attempt; 100 once COMPLETED.")
    current_step: str | None = Field(description="What the running attempt reported it is doing.")
    model: str | None = Field(description="The model that answered, when the provider said.")
    usage: Usage | None = Field(description="Token usage of the answering call, when the provider reported it.")
    timings: Timings
    actions: list[Literal["retry", "cancel", "delete"]] = Field(
        description="What the task's state allows (POST .../retry, POST .../cancel, DELETE); any other is a 409."
    )

    @classmethod
    def from_task(cls, task: Task) -> TaskPublic:
        """The stored record's "" and 0 (its "not yet") become null."""
        usage = None
        if task.total_tokens:
            tokens = (task.prompt_tokens, task.completion_tokens, task.total_tokens)
            usage = Usage(prompt_tokens=tokens[0], completion_tokens=tokens[1], total_tokens=tokens[2])
        return cls(
            attempts=task.attempts,
            progress=task.progress,
            current_step=task.current_step or None,
            model=task.model or None,
            usage=usage,
            timings=timings(task),
            task_id=task.id,
            task_type=task.task_type,
            state=task.state,
            priority=task.priority,
            content=task.content,
            params=json.loads(task.params) if task.params else None,
            result=result_of(task),
            provider=task.provider or None,
            retry_count=task.retry_count,
            max_retries=task.max_retries,
            last_error=task.last_error or None,
            error_type=task.error_type or None,
            worker=task.consumer or None,
            created_at=task.created_at or None,
            updated_at=task.updated_at or None,
            started_at=task.started_at or None,
            finished_at=task.finished_at or None,
            due_at=task.due_at or None,
            actions=actions_for(task.state),
        )


def result_of(task: Task) -> str | dict[str, Any] | list[Any] | None:
    """The stored result; parsed when the task's type says its result is JSON."""
    if not task.result:
        return None
    task_type = tasktypes.get(task.task_type)
    if task_type is None or task_type.result_format != "json":
        return task.result
    try:
        parsed: dict[str, Any] | list[Any] = json.loads(task.result)
    except ValueError:
        return task.result
    return parsed


def timings(task: Task) -> Timings:
    def span(start: int, end: int) -> int | None:
        return end - start if start and end else None

    return Timings(
        queued_ms=span(task.created_at, task.started_at),
        run_ms=span(task.started_at, task.finished_at),
        total_ms=span(task.created_at, task.finished_at),
    )


class TaskDetail(TaskPublic):
    """One task with its audit trail (state changes, oldest first, bounded) and the errors of its
    failed attempts."""

    history: list[HistoryEntry]
    errors: list[HistoryEntry] = Field(description="The entries of `history` that carry an error.")

    @classmethod
    def build(cls, task: Task, trail: list[dict[str, Any]]) -> TaskDetail:
        entries = [HistoryEntry.model_validate(e) for e in trail]
        public = TaskPublic.from_task(task).model_dump()
        return cls(**public, history=entries, errors=[e for e in entries if e.error])


class TaskPage(BaseModel):
    """One page of a listing, newest first; pass `next_cursor` back as `cursor` for the next page."""

    items: list[TaskPublic]
    next_cursor: str | None


class Recovered(BaseModel):
    """How many orphaned tasks a sweep returned to the retry list (or, out of retries, to the DLQ)."""

    recovered: int


class QueueDepths(BaseModel):
    """Lengths of the queue structures themselves."""

    primary: int
    retry: int
    scheduled: int
    dlq: int


class PriorityDepth(BaseModel):
    """PENDING tasks of one priority level: new work (`primary`) and due retries (`retry`)."""

    priority: int = Field(ge=0, le=9)
    primary: int
    retry: int


class OwnerBacklog(BaseModel):
    """One API key's PENDING tasks and its tasks running now (fleet-wide)."""

    owner: str = Field(description='The key\'s id; "" for the tasks submitted while the API ran without keys.')
    backlog: int
    active: int


class QueueStatus(BaseModel):
    """The pipeline at a glance."""

    queues: QueueDepths
    states: dict[State, int]
    retry_ratio: float = Field(description="Current probability that a consumer prefers the retry list.")
    workers: int = Field(description="Consumers whose heartbeat is alive.")
    priorities: list[PriorityDepth] = Field(
        description="PENDING per priority level, 0 (runs first) to 9, each level once; `queues` has the totals."
    )
    top_owners: list[OwnerBacklog] = Field(description="Up to 10 keys with the most PENDING tasks, most first.")


class QueueEntry(BaseModel):
    """One id in a queue; `score` is the due time (scheduled) or the time of death (dlq), in ms."""

    task_id: str
    score: int | None


class QueueTasks(BaseModel):
    """One page of the ids in a queue, in queue order (FIFO for the lists, by score for the sets)."""

    queue: Literal["primary", "retry", "scheduled", "dlq"]
    total: int = Field(description="Length of the queue now.")
    items: list[QueueEntry]
    next_cursor: str | None = Field(description="Offset of the next page; the queue moves, so this is a peek.")


class RequeueRequest(BaseModel):
    """Which dead tasks to re-drive: the ids given, or every dead task of `task_type`, or every
    dead task when neither is given (at most one of the two)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"task_ids": ["6f1c2d3e-0000-4000-8000-000000000000"]}]})

    task_ids: list[str] | None = Field(default=None, max_length=1000)
    task_type: str | None = Field(default=None, description="A registered type (see /api/v1/task-types).")

    @model_validator(mode="after")
    def _one_selection(self) -> RequeueRequest:
        if self.task_ids is not None and self.task_type is not None:
            raise ValueError("give task_ids or task_type, not both")
        return self


class Requeued(BaseModel):
    """What a DLQ re-drive did: how many went back to the retry list, and which given ids were not dead."""

    requeued: int
    not_dead: list[str]


class Purged(BaseModel):
    """How many dead tasks were deleted."""

    deleted: int


class Throughput(BaseModel):
    """Tasks finished in a window."""

    completed: int
    failed: int = Field(description="FAILED and DLQ.")


class ThroughputBucket(BaseModel):
    """Tasks that finished within one second or one minute."""

    start: int = Field(description="Start of the bucket, epoch ms.")
    completed: int
    failed: int = Field(description="FAILED and DLQ.")


class ThroughputHistory(BaseModel):
    """The recent throughput, from the rings the transition scripts keep: for a chart to start
    from history and then add the live stream's transitions (those whose `at` is after `now`)."""

    now: int = Field(description="The server's time of the read, epoch ms.")
    seconds: list[ThroughputBucket] = Field(description="The last 60 seconds, oldest first.")
    minutes: list[ThroughputBucket] = Field(description="The last 60 minutes, oldest first (the current one so far).")


class TypeFigures(BaseModel):
    """One task type's figures: counters since the start, moved by the same transition scripts
    and in the same steps as the global ones, and the tasks of this type stored now."""

    submitted: int = 0
    completed: int = 0
    failed: int = Field(0, description="Attempts that ended the task FAILED (input rejected).")
    dead: int = Field(0, description="Tasks sent to the DLQ (out of retries, provider problem, worker lost).")
    retried: int = Field(0, description="Failed attempts that spent a retry (ACTIVE -> SCHEDULED).")
    postponed: int = Field(0, description="Attempts rescheduled without spending a retry (a rate limit).")
    recovered: int = Field(0, description="Attempts of a lost worker requeued by the reaper.")
    stored: int = Field(0, description="Tasks of this type stored now, whatever their state (its index).")
    success_rate: float | None = Field(None, description="completed / (completed + failed + dead); null before any.")


class Statistics(BaseModel):
    """The pipeline's figures, all from counters kept by the transition scripts (no scan)."""

    states: dict[State, int]
    totals: dict[str, int] = Field(description="Counters since the start: submitted, started, completed, failed, …")
    success_rate: float | None = Field(description="completed / (completed + failed + dead); null before any.")
    duration_p50_ms: float | None = Field(description="Median run time of completed attempts (from the histogram).")
    duration_p95_ms: float | None
    duration_mean_ms: float | None
    throughput_last_minute: Throughput
    throughput_last_hour: Throughput
    by_type: dict[str, TypeFigures] = Field(
        description="Per task type: every registered type (zeros until it moves), and any other type a "
        "counter names (one no longer loaded)."
    )


class Breaker(BaseModel):
    """The circuit breaker shared by every worker (its state lives in Redis)."""

    state: Literal["closed", "open", "half-open"]
    fail_counter: int = Field(description="Consecutive provider failures counted so far.")
    seconds_left: float = Field(description="While open: seconds until a probe call is let through.")


class Health(BaseModel):
    """The system at a glance; 503 when any check fails, with `problems` saying what is wrong."""

    status: Literal["ok", "degraded", "unhealthy"] = Field(
        description="`degraded` (still 200): working, but slowed down, e.g. by the provider's 429s (see `warnings`)."
    )
    redis: Literal["ok", "unreachable"]
    workers: int | None = Field(description="Consumer/worker pairs whose heartbeat is alive.")
    scheduler: Literal["ok", "missing"] | None
    breaker: Literal["closed", "open", "half-open"] | None
    problems: list[str]
    auth: Literal["api_keys", "open"] = Field(description="`open`: no API_KEYS configured, anyone may call anything.")
    warnings: list[str] = Field(description="What is unsafe though not broken (an open API); the status ignores it.")
    redis_url: str = Field(description="Where the API keeps tasks, its password redacted.")


class Probe(BaseModel):
    """Answer of /live and /ready; `service` names it, so a probe is not fooled by another
    program on the port (utils/probe.py)."""

    status: Literal["ok", "unavailable"]
    service: Literal["asynctaskflow"] = "asynctaskflow"


class WorkerInfo(BaseModel):
    """One consumer/worker pair, from its heartbeat and the counts its reports moved."""

    consumer_id: str
    worker_id: str | None
    host: str | None
    pid: int | None = Field(description="The consumer's process id (Celery's own pids: see diagnostics).")
    concurrency: int | None
    inflight: int | None
    retry_ratio: float | None
    breaker: str | None = Field(description="The breaker as this consumer last saw it.")
    taken: dict[str, int] | None = Field(description="Tasks it took from each list (primary, retry), as claimed.")
    started_at: int | None
    last_heartbeat: int | None
    processed: int
    completed: int
    failed: int


class Workers(BaseModel):
    """Every live consumer/worker pair, and the shared breaker."""

    workers: list[WorkerInfo]
    breaker: Breaker


class Diagnostics(BaseModel):
    """What the Celery workers answer to `inspect` (within DIAGNOSTICS_TIMEOUT), and Redis's own figures."""

    celery: dict[str, Any] = Field(description="`active`, `reserved`, `stats` per worker, or an `error`.")
    redis: dict[str, Any]


# --- a key's limits and use (api/routes/usage.py) ----------------------------------------------
class UsageLimits(BaseModel):
    """A key's limits as the claim enforces them (API_KEY_LIMITS: field by field, the key's own
    entry's, else the `*` entry's); null: no limit."""

    concurrency: int | None = Field(description="The most of its tasks ACTIVE at once, fleet-wide.")
    daily_tokens: int | None = Field(description="Tokens its completed tasks may use per UTC day.")


class KeyUsage(BaseModel):
    """One API key's limits, what it uses of them now, and whether its pending work waits on one."""

    key: str = Field(description='The key\'s id; "" while the API runs without keys.')
    day: str = Field(description="The UTC day `tokens_today` counts (YYYY-MM-DD, the Redis server's clock).")
    limits: UsageLimits
    active: int = Field(description="Its tasks ACTIVE now, fleet-wide.")
    backlog: int = Field(description="Its tasks PENDING now.")
    tokens_today: int = Field(description="Tokens its completed tasks used today.")
    waiting: Literal["concurrency", "daily_tokens"] | None = Field(
        description="Why its pending work is held back now: `concurrency` (until one of its running tasks ends) "
        "or `daily_tokens` (until the next UTC day); null: not held."
    )
    resumes_at: int | None = Field(description="With `daily_tokens`: when its work is taken again (epoch ms).")


# --- LLM provider (api/routes/openrouter.py) ---------------------------------------------------
class ProviderAccount(BaseModel):
    """The key as the provider reports it (OpenRouter's `GET /key`), cached for
    OPENROUTER_STATUS_CACHE_SECONDS so the provider is not asked on every request."""

    checked_at: int = Field(description="When the provider was asked (epoch ms).")
    key_valid: bool | None = Field(description="null: not known (no key, offline, or the server has no key endpoint).")
    label: str | None = None
    usage: float | None = Field(None, description="Credits used, as the provider counts them.")
    limit: float | None = Field(None, description="Credit limit of the key; null: unlimited or not reported.")
    limit_remaining: float | None = None
    is_free_tier: bool | None = None
    rate_limit: dict[str, Any] | None = Field(None, description="The provider's own rate limit for this key.")
    error: str | None = Field(None, description="Why the provider could not say (its status and message).")
    note: str | None = Field(None, description="Why there is nothing to say: no key endpoint on this server.")


class ProviderRateLimit(BaseModel):
    """The fleet's own rate limit (a token bucket in Redis shared by every worker)."""

    enabled: bool
    requests: int = Field(description="LLM_RATE_LIMIT_REQUESTS per interval (0: no limit).")
    interval_seconds: float
    pace: float = Field(description="Share of the configured rate in force: below 1 after the provider's 429s.")
    tokens: float | None = Field(description="Tokens in the bucket at its last use; null when idle (full).")


class ProviderStatus(BaseModel):
    """The LLM provider: which one, its key and credits, the rate limit, the breaker, the pause that
    401/402 put on every call, and the last error and success the workers saw."""

    provider: Literal["openrouter", "offline"]
    base_url: str | None
    model: str
    fallback_models: list[str]
    key_configured: bool
    account: ProviderAccount
    cached: bool = Field(description="`account` came from the cache rather than a fresh provider call.")
    rate_limit: ProviderRateLimit
    breaker: Breaker
    paused: bool = Field(description="LLM calls are paused after a 401/402 (consumers take no work).")
    paused_until: int | None
    pause_reason: str | None
    last_error: str | None
    last_error_type: str | None
    last_error_model: str | None
    last_error_at: int | None
    last_success_at: int | None
    last_model: str | None


class ProviderDay(BaseModel):
    """One UTC day of LLM calls (every HTTP call: chunks and fallback models count one each)."""

    day: str = Field(description="YYYY-MM-DD (UTC), or `total` for the sum of the days asked.")
    calls: int
    ok: int
    errors: int
    errors_by_class: dict[str, int] = Field(
        description="Calls by error class: transient, rate_limited, input_rejected, provider_problem, provider_paused."
    )
    models: dict[str, int] = Field(description="Calls per model asked.")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ProviderMetrics(BaseModel):
    """The last `days` days, oldest first, and their total."""

    days: list[ProviderDay]
    total: ProviderDay


class TaskTypeInfo(BaseModel):
    """A task type the API accepts, and the JSON Schema of its submit body."""

    name: str
    description: str
    submit_path: str = Field(
        description='POST one input here; `<submit_path>bulk` takes `{"items": [...]}`. Every body and item also '
        "takes `priority` (0-9, default 5), which `input_schema` leaves out: it orders the queue, it is no input."
    )
    result_format: Literal["text", "json"]
    long_input: Literal["split", "refuse"] = Field(
        description="split: any length, worked on in pieces; refuse: more than CHUNK_CHARS is a 413."
    )
    answers_offline: bool = Field(description="Whether it has a real answer without an LLM provider.")
    available: bool = Field(
        description="False while no LLM provider is configured and it needs one (a submit is 422 provider_required)."
    )
    input_schema: dict[str, Any]

    @classmethod
    def of(cls, task_type: TaskType, offline: bool, submit_path: str) -> TaskTypeInfo:
        return cls(
            name=task_type.name,
            description=task_type.description,
            submit_path=submit_path,
            result_format=task_type.result_format,
            long_input=task_type.long_input,
            answers_offline=task_type.answers_offline,
            available=task_type.answers_offline or not offline,
            input_schema=task_type.Create.model_json_schema(by_alias=True),
        )
