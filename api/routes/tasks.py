"""Routes under /api/v1/tasks. Submit a task of each type, then read, list, retry, cancel and delete any task.

Static paths (`summarize`, `requeue-orphaned`) are registered before `/{task_id}` so an id can
never shadow them.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Header, Request, Response

from api.auth import ANONYMOUS, Admin, Principal, SubmitDep, owns
from api.deps import CursorDep, LimitDep, SettingsDep, StatusDep, StoreDep, SyncStoreDep, TaskIdDep
from api.errors import ApiError
from api.listing import load_page
from api.schemas import (
    BulkAccepted,
    BulkCreate,
    ErrorBody,
    Recovered,
    Statistics,
    TaskAccepted,
    TaskCreate,
    TaskDetail,
    TaskPage,
    TaskPublic,
)
from api.stats import overview
from core.errors import TaskNotFound
from core.settings import Settings
from core.states import State
from core.store import AsyncTaskStore, Created
from core.task import Task

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error bodies a route can return (plus 503, which every route can)."""
    return {status: {"model": ErrorBody} for status in (*statuses, 503)}


def _with_and_without_slash(method: str, path: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
    """Serve `path/` and `path` alike; a redirect between them would turn some clients' POST into a GET."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(f"{path}/", endpoint, methods=[method], **kwargs)
        router.add_api_route(path, endpoint, methods=[method], include_in_schema=False, **kwargs)
        return endpoint

    return register


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Repeat a submit safely: the same key within IDEMPOTENCY_TTL_SECONDS returns the task(s) "
        "the first submit created (with `Idempotent-Replayed: true`), even for concurrent duplicates.",
    ),
]


def _check_size(settings: Settings, content: str) -> None:
    if len(content) > settings.max_content_chars:
        message = f"content has {len(content)} characters; the limit is {settings.max_content_chars}"
        raise ApiError(413, "content_too_large", message)


async def _rate_limit(store: AsyncTaskStore, settings: Settings, principal: Principal, cost: int) -> None:
    """Each key's submissions are a token bucket in Redis (SUBMIT_RATE_PER_SECOND, burst
    SUBMIT_RATE_BURST), shared by every API replica; a bulk costs one token per item."""
    if principal.anonymous:  # no keys configured: there is no one to count against
        return
    bucket = f"submit:{principal.id}"
    wait = await store.take_token(bucket, settings.submit_rate_per_second, settings.submit_rate_burst, cost)
    if wait > 0:
        log.info("key %s rate-limited for %.2fs (%d tasks asked)", principal.id, wait, cost)
        retry_after = str(max(1, math.ceil(wait)))
        message = f"too many submissions; retry in {retry_after}s"
        raise ApiError(429, "rate_limited", message, {"Retry-After": retry_after})


async def submit_tasks(
    store: AsyncTaskStore,
    settings: Settings,
    task_type: str,
    contents: list[str],
    idempotency_key: str | None,
    principal: Principal = ANONYMOUS,
) -> tuple[Created, list[Task]]:
    """Store and queue new tasks of `task_type` in one atomic step, owned by `principal`'s key.
    This is all a submit route does, so a new task type needs only its route here and its
    handler in the worker. A repeated idempotency key creates nothing; the tasks returned are
    then the stored ones, as they are now."""
    for content in contents:
        _check_size(settings, content)
    await _rate_limit(store, settings, principal, len(contents))
    owner = principal.owner
    tasks = [
        Task(id=str(uuid.uuid4()), task_type=task_type, content=content, max_retries=settings.max_retries, owner=owner)
        for content in contents
    ]
    # Idempotency keys are per API key: another client's key of the same name is another key.
    scoped_key = f"{owner}:{idempotency_key}" if owner and idempotency_key else idempotency_key or ""
    created = await store.create_many(tasks, scoped_key, settings.idempotency_ttl_seconds * 1000)
    if created.replayed:
        log.info("submit replayed for an idempotency key: %s", ", ".join(created.ids))
        return created, await store.get_many(created.ids)
    _log_submitted(tasks, task_type)
    return created, tasks


def _log_submitted(tasks: list[Task], task_type: str) -> None:
    """One INFO line per submit: a bulk of 100 would otherwise write 100. Each id stays findable
    at DEBUG, and in the task's own history."""
    if len(tasks) == 1:
        log.info("task %s submitted (%s, %d chars)", tasks[0].id, task_type, len(tasks[0].content))
        return
    chars = sum(len(t.content) for t in tasks)
    first, last = tasks[0].id, tasks[-1].id
    log.info("%d tasks submitted in bulk (%s, %d chars): %s … %s", len(tasks), task_type, chars, first, last)
    for task in tasks:
        log.debug("task %s submitted (%s, %d chars)", task.id, task_type, len(task.content))


async def submit_task(store: AsyncTaskStore, settings: Settings, task_type: str, content: str) -> Task:
    """Store and queue one new task of `task_type` (no idempotency key)."""
    _created, tasks = await submit_tasks(store, settings, task_type, [content], None)
    return tasks[0]


def _accepted_body(task: Task) -> TaskAccepted:
    return TaskAccepted(task_id=task.id, task_type=task.task_type, state=task.state, created_at=task.created_at)


def _accepted(request: Request, response: Response, task: Task) -> TaskAccepted:
    response.headers["Location"] = _task_path(request.app).replace(_ANY_ID, task.id)
    return _accepted_body(task)


_ANY_ID = "00000000-0000-0000-0000-000000000000"


def _task_path(app: Any) -> str:
    """The task route's path for a placeholder id, looked up once per app: `url_path_for` tries
    every route in turn (raising NoMatchFound for each), a visible share of a submit's CPU."""
    path: str | None = getattr(app.state, "task_path", None)
    if path is None:
        path = app.state.task_path = str(app.url_path_for("get_task", task_id=_ANY_ID))
    return path


def _replayed(response: Response, created: Created, tasks: list[Task]) -> None:
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
        if len(tasks) != len(created.ids):  # deleted between the two reads: nothing left to show
            raise ApiError(409, "idempotency_key_reused", "the tasks this key created are gone; use a new key")


@_with_and_without_slash(
    "POST", "/summarize", status_code=202, response_model=TaskAccepted, responses=_errors(409, 413, 422, 429)
)
async def submit_summarize(
    body: TaskCreate,
    store: StoreDep,
    settings: SettingsDep,
    principal: SubmitDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TaskAccepted:
    """Queue a text to summarize; its result appears on the task at the `Location` header."""
    created, tasks = await submit_tasks(store, settings, "summarize", [body.content], idempotency_key, principal)
    _replayed(response, created, tasks)
    return _accepted(request, response, tasks[0])


@router.post("/summarize/bulk", status_code=202, response_model=BulkAccepted, responses=_errors(409, 413, 422, 429))
async def submit_summarize_bulk(
    body: BulkCreate,
    store: StoreDep,
    settings: SettingsDep,
    principal: SubmitDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> BulkAccepted:
    """Queue up to BULK_MAX_ITEMS texts in one atomic step: all are stored, or (413, 422) none."""
    if len(body.items) > settings.bulk_max_items:
        message = f"{len(body.items)} items; the limit is {settings.bulk_max_items}"
        raise ApiError(413, "too_many_items", message)
    contents = [item.content for item in body.items]
    created, tasks = await submit_tasks(store, settings, "summarize", contents, idempotency_key, principal)
    _replayed(response, created, tasks)
    return BulkAccepted(items=[_accepted_body(t) for t in tasks])


@router.get("/statistics/overview", response_model=Statistics, responses=_errors(), dependencies=[Admin])
async def statistics(store: StoreDep) -> Statistics:
    """Tasks per state, totals since the start, success rate, p50/p95 run time of completed
    attempts, throughput over the last minute and hour. All from counters and structures the
    transition scripts keep; the cost does not grow with the number of tasks."""
    states = await store.state_counts()
    totals = await store.counters()
    return overview(states, totals, await store.durations(), await store.throughput())


@router.post("/requeue-orphaned", response_model=Recovered, responses=_errors(), dependencies=[Admin])
async def requeue_orphaned(store: SyncStoreDep, settings: SettingsDep) -> Recovered:
    """Run the reaper's sweep now: tasks of dead consumers, or past their lease, go back to the
    retry list. The scheduler does this by itself; this is the operator's button."""
    # The sweep is the scheduler's synchronous code; a thread keeps it off the event loop.
    recovered = await anyio.to_thread.run_sync(
        store.recover_orphans, settings.task_lease_seconds, settings.scheduler_batch_size
    )
    log.info("requeue-orphaned recovered %d tasks", recovered)
    return Recovered(recovered=recovered)


async def _own_page(
    store: AsyncTaskStore, owner: str, status: State | None, limit: int, cursor: str | None
) -> TaskPage:
    """A page of one key's own tasks, from its owner index (never a scan). A `status` filter is
    applied to the page read, so a filtered page may be short or empty while `next_cursor` goes on."""
    page = await store.page(None, limit, cursor, owner=owner)
    tasks = [t for t in await store.get_many(page.ids) if status is None or t.state is status]
    return TaskPage(items=[TaskPublic.from_task(t) for t in tasks], next_cursor=page.cursor)


async def _check_owner(store: AsyncTaskStore, principal: Principal, task_id: str) -> None:
    """A task another key owns is, to a submit key, a task that does not exist (404, not 403: ids
    must not be probed). An owner never changes, so checking before the transition is safe."""
    if not principal.sees_all and not owns(principal, await store.owner_of(task_id)):
        raise TaskNotFound(task_id)


@_with_and_without_slash("GET", "", response_model=TaskPage, responses=_errors(422))
async def list_tasks(
    store: StoreDep, principal: SubmitDep, status: StatusDep, limit: LimitDep, cursor: CursorDep
) -> TaskPage:
    """Tasks newest first, optionally of one state, a page at a time. A submit-scope key sees only
    its own tasks (read from its own index; with `status`, pages may be short: follow `next_cursor`)."""
    if not principal.sees_all:
        return await _own_page(store, principal.owner, status, limit, cursor)
    return await load_page(store, status, limit, cursor)


@router.get("/{task_id}", name="get_task", response_model=TaskDetail, responses=_errors(404))
async def get_task(task_id: TaskIdDep, store: StoreDep, principal: SubmitDep) -> TaskDetail:
    """One task, with its result once COMPLETED or its last error, its progress, timings, attempts,
    model and token usage, and its audit trail (state changes and errors, the newest 50)."""
    task = await store.get(task_id)
    if not owns(principal, task.owner):
        raise TaskNotFound(task_id)
    return TaskDetail.build(task, await store.history(task_id))


@router.delete("/{task_id}", status_code=204, response_class=Response, response_model=None, responses=_errors(404, 409))
async def delete_task(task_id: TaskIdDep, store: StoreDep, principal: SubmitDep) -> Response:
    """Remove a task that is not running, with every trace of it; an ACTIVE task is refused (409)."""
    await _check_owner(store, principal, task_id)
    await store.delete(task_id)
    log.info("task %s deleted", task_id)
    return Response(status_code=204)


@router.post("/{task_id}/retry", status_code=202, response_model=TaskPublic, responses=_errors(404, 409))
async def retry_task(task_id: TaskIdDep, store: StoreDep, principal: SubmitDep) -> TaskPublic:
    """Re-drive a FAILED, DLQ or CANCELLED task with a fresh retry budget."""
    await _check_owner(store, principal, task_id)
    previous = await store.retry(task_id)
    log.info("task %s retried from %s", task_id, previous.value)
    return TaskPublic.from_task(await store.get(task_id))


@router.post("/{task_id}/cancel", response_model=TaskPublic, responses=_errors(404, 409))
async def cancel_task(task_id: TaskIdDep, store: StoreDep, principal: SubmitDep) -> TaskPublic:
    """Cancel a task that has not finished: PENDING and SCHEDULED become CANCELLED at once; an ACTIVE
    one too, and the worker's result, when it comes, is refused. A finished task is refused (409)."""
    await _check_owner(store, principal, task_id)
    previous = await store.cancel(task_id)
    log.info("task %s cancelled (was %s)", task_id, previous.value)
    return TaskPublic.from_task(await store.get(task_id))
