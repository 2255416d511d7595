"""Routes under /api/v1/tasks. Submit a task of each type, then read, list, retry, cancel and delete any task.

Static paths (`summarize`, `requeue-orphaned`) are registered before `/{task_id}` so an id can
never shadow them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from api.deps import CursorDep, LimitDep, SettingsDep, StatusDep, StoreDep, SyncStoreDep, TaskIdDep
from api.errors import ApiError
from api.listing import load_page
from api.schemas import ErrorBody, Recovered, TaskAccepted, TaskCreate, TaskPage, TaskPublic
from core.settings import Settings
from core.store import AsyncTaskStore
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


async def submit_task(store: AsyncTaskStore, settings: Settings, task_type: str, content: str) -> Task:
    """Store and queue a new task of `task_type`. This is all a submit route does, so a new task
    type needs only its route here and its handler in the worker."""
    if len(content) > settings.max_content_chars:
        message = f"content has {len(content)} characters; the limit is {settings.max_content_chars}"
        raise ApiError(413, "content_too_large", message)
    task = Task(id=str(uuid.uuid4()), task_type=task_type, content=content, max_retries=settings.max_retries)
    await store.create(task)
    log.info("task %s submitted (%s, %d chars)", task.id, task_type, len(content))
    return task


def _accepted(request: Request, response: Response, task: Task) -> TaskAccepted:
    response.headers["Location"] = str(request.app.url_path_for("get_task", task_id=task.id))
    return TaskAccepted(task_id=task.id, task_type=task.task_type, state=task.state, created_at=task.created_at)


@_with_and_without_slash(
    "POST", "/summarize", status_code=202, response_model=TaskAccepted, responses=_errors(413, 422)
)
async def submit_summarize(
    body: TaskCreate, store: StoreDep, settings: SettingsDep, request: Request, response: Response
) -> TaskAccepted:
    """Queue a text to summarize; its result appears on the task at the `Location` header."""
    task = await submit_task(store, settings, "summarize", body.content)
    return _accepted(request, response, task)


@router.post("/requeue-orphaned", response_model=Recovered, responses=_errors())
async def requeue_orphaned(store: SyncStoreDep, settings: SettingsDep) -> Recovered:
    """Run the reaper's sweep now: tasks of dead consumers, or past their lease, go back to the
    retry list. The scheduler does this by itself; this is the operator's button."""
    # The sweep is the scheduler's synchronous code; a thread keeps it off the event loop.
    recovered = await anyio.to_thread.run_sync(
        store.recover_orphans, settings.task_lease_seconds, settings.scheduler_batch_size
    )
    log.info("requeue-orphaned recovered %d tasks", recovered)
    return Recovered(recovered=recovered)


@_with_and_without_slash("GET", "", response_model=TaskPage, responses=_errors(422))
async def list_tasks(store: StoreDep, status: StatusDep, limit: LimitDep, cursor: CursorDep) -> TaskPage:
    """Tasks newest first, optionally of one state, a page at a time."""
    return await load_page(store, status, limit, cursor)


@router.get("/{task_id}", name="get_task", response_model=TaskPublic, responses=_errors(404))
async def get_task(task_id: TaskIdDep, store: StoreDep) -> TaskPublic:
    """One task, with its result once COMPLETED or its last error."""
    return TaskPublic.from_task(await store.get(task_id))


@router.delete("/{task_id}", status_code=204, response_class=Response, response_model=None, responses=_errors(404, 409))
async def delete_task(task_id: TaskIdDep, store: StoreDep) -> Response:
    """Remove a task that is not running, with every trace of it; an ACTIVE task is refused (409)."""
    await store.delete(task_id)
    log.info("task %s deleted", task_id)
    return Response(status_code=204)


@router.post("/{task_id}/retry", status_code=202, response_model=TaskPublic, responses=_errors(404, 409))
async def retry_task(task_id: TaskIdDep, store: StoreDep) -> TaskPublic:
    """Re-drive a FAILED, DLQ or CANCELLED task with a fresh retry budget."""
    previous = await store.retry(task_id)
    log.info("task %s retried from %s", task_id, previous.value)
    return TaskPublic.from_task(await store.get(task_id))


@router.post("/{task_id}/cancel", response_model=TaskPublic, responses=_errors(404, 409))
async def cancel_task(task_id: TaskIdDep, store: StoreDep) -> TaskPublic:
    """Withdraw a PENDING or SCHEDULED task; a running or finished one is refused (409)."""
    previous = await store.cancel(task_id)
    log.info("task %s cancelled (was %s)", task_id, previous.value)
    return TaskPublic.from_task(await store.get(task_id))
