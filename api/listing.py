"""Reading one page of tasks, shared by the task list and the DLQ view."""

from __future__ import annotations

from api.schemas import TaskPage, TaskPublic
from core.states import State
from core.store import AsyncTaskStore
from core.task import Task


async def load_page(
    store: AsyncTaskStore,
    state: State | None,
    limit: int,
    cursor: str | None,
    task_type: str | None = None,
    owner: str = "",
    state_order: bool = False,
    priority: int | None = None,
) -> TaskPage:
    """Newest first, the tasks in `state`, of `task_type`, of `owner` and at `priority` (each
    unset: any), from an index (AsyncTaskStore.page says which). The tasks are read after their ids, so one deleted,
    or moved to another state, in between is left out: a page may be short, never holds a ghost
    or a task of another state. `state_order`: see AsyncTaskStore.page."""
    page = await store.page(state, limit, cursor, owner=owner, task_type=task_type or "", state_order=state_order,
                            priority=priority)  # fmt: skip

    def kept(task: Task) -> bool:
        matches = (state is None or task.state is state) and (not task_type or task.task_type == task_type)
        return matches and (priority is None or task.priority == priority)

    tasks = [t for t in await store.get_many(page.ids) if kept(t)]
    return TaskPage(items=[TaskPublic.from_task(t) for t in tasks], next_cursor=page.cursor)
