"""Routes under /api/v1/tasks, to read, list, retry, cancel and delete any task, of any type (the
submit routes come from the task-type registry: api/routes/submit.py).

Static paths (`statistics`, `requeue-orphaned`) are registered before `/{task_id}` so an id can
never shadow them.
"""

from __future__ import annotations

import logging

import anyio.to_thread
from fastapi import APIRouter, Response

from api.auth import Admin, Principal, SubmitDep, owns
from api.deps import (
    CursorDep,
    LimitDep,
    PriorityQuery,
    SettingsDep,
    StatusDep,
    StoreDep,
    SyncStoreDep,
    TaskIdDep,
    TaskTypeDep,
    TypeNamesDep,
)
from api.listing import load_page
from api.routes import add_both_slashes, errors_doc
from api.routes.submit import PREFIX
from api.schemas import Recovered, Statistics, TaskDetail, TaskPage, TaskPublic
from api.stats import overview, type_figures
from core.errors import TaskNotFound
from core.store import AsyncTaskStore

log = logging.getLogger(__name__)
router = APIRouter(prefix=PREFIX, tags=["tasks"])


@router.get("/statistics/overview", response_model=Statistics, responses=errors_doc(), dependencies=[Admin])
async def statistics(store: StoreDep, type_names: TypeNamesDep) -> Statistics:
    """Tasks per state, totals since the start, success rate, p50/p95 run time of completed
    attempts, throughput over the last minute and hour, and per task type its totals (submitted,
    completed, failed, dead, …), success rate and tasks stored. All from counters and structures
    the transition scripts keep; the cost does not grow with the number of tasks."""
    states = await store.state_counts()
    totals = await store.counters()
    counters = await store.type_counters()
    by_type = type_figures(counters, await store.type_sizes(sorted({*type_names, *counters})))
    return overview(states, totals, await store.durations(), await store.throughput(), by_type)


@router.post("/requeue-orphaned", response_model=Recovered, responses=errors_doc(), dependencies=[Admin])
async def requeue_orphaned(store: SyncStoreDep, settings: SettingsDep) -> Recovered:
    """Run the reaper's sweep now: tasks of dead consumers, or past their lease, go back to the
    retry list. The scheduler does this by itself; this is the operator's button."""
    # The sweep is the scheduler's synchronous code; a thread keeps it off the event loop.
    recovered = await anyio.to_thread.run_sync(
        store.recover_orphans, settings.task_lease_seconds, settings.scheduler_batch_size
    )
    log.info("requeue-orphaned recovered %d tasks", recovered)
    return Recovered(recovered=recovered)


async def _check_owner(store: AsyncTaskStore, principal: Principal, task_id: str) -> None:
    """A task another key owns is, to a submit key, a task that does not exist (404, not 403: ids
    must not be probed). An owner never changes, so checking before the transition is safe."""
    if not principal.sees_all and not owns(principal, await store.owner_of(task_id)):
        raise TaskNotFound(task_id)


async def list_tasks(
    store: StoreDep,
    principal: SubmitDep,
    status: StatusDep,
    task_type: TaskTypeDep,
    limit: LimitDep,
    cursor: CursorDep,
    priority: PriorityQuery = None,
) -> TaskPage:
    """Tasks newest first, optionally of one state, of one type and of one priority, a page at a
    time; never a scan.

    `status` or `task_type` alone pages its own index (full pages). A submit-scope key sees only
    its own tasks, read from its own index, with the filters checked on each entry read. With both
    `status` and `task_type`, the smaller of the state's and the type's index is read and the other
    filter checked on each entry. `priority` has no index: it is always checked on each entry of
    the index read (all tasks, without another filter). A listing that checks entries fills its
    page, but stops after some 2,000 entries checked (FILTER_SCAN_MAX; more for a large `limit`):
    then a page may be short, even empty, while `next_cursor` goes on. The order is the read index's: creation time
    (type, owner, all tasks), or time of entering the state (state index)."""
    owner = "" if principal.sees_all else principal.owner
    return await load_page(store, status, limit, cursor, task_type=task_type, owner=owner, priority=priority)


add_both_slashes(router, "GET", "", list_tasks, response_model=TaskPage, responses=errors_doc(422))


@router.get("/{task_id}", name="get_task", response_model=TaskDetail, responses=errors_doc(404))
async def get_task(task_id: TaskIdDep, store: StoreDep, principal: SubmitDep) -> TaskDetail:
    """One task, with its result once COMPLETED or its last error, its progress, timings, attempts,
    model and token usage, and its audit trail (state changes and errors, the newest 50)."""
    task = await store.get(task_id)
    if not owns(principal, task.owner):
        raise TaskNotFound(task_id)
    return TaskDetail.build(task, await store.history(task_id))


@router.delete(
    "/{task_id}", status_code=204, response_class=Response, response_model=None, responses=errors_doc(404, 409)
)
async def delete_task(task_id: TaskIdDep, store: StoreDep, principal: SubmitDep) -> Response:
    """Remove a task that is not running, with every trace of it; an ACTIVE task is refused (409)."""
    await _check_owner(store, principal, task_id)
    await store.delete(task_id)
    log.info("task %s deleted", task_id)
    return Response(status_code=204)


@router.post("/{task_id}/retry", status_code=202, response_model=TaskPublic, responses=errors_doc(404, 409))
async def retry_task(task_id: TaskIdDep, store: StoreDep, principal: SubmitDep) -> TaskPublic:
    """Re-drive a FAILED, DLQ or CANCELLED task with a fresh retry budget."""
    await _check_owner(store, principal, task_id)
    previous = await store.retry(task_id)
    log.info("task %s retried from %s", task_id, previous.value)
    return TaskPublic.from_task(await store.get(task_id))


@router.post("/{task_id}/cancel", response_model=TaskPublic, responses=errors_doc(404, 409))
async def cancel_task(task_id: TaskIdDep, store: StoreDep, principal: SubmitDep) -> TaskPublic:
    """Cancel a task that has not finished: PENDING and SCHEDULED become CANCELLED at once; an ACTIVE
    one too, and the worker's result, when it comes, is refused. A finished task is refused (409)."""
    await _check_owner(store, principal, task_id)
    previous = await store.cancel(task_id)
    log.info("task %s cancelled (was %s)", task_id, previous.value)
    return TaskPublic.from_task(await store.get(task_id))
