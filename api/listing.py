"""Reading one page of tasks, shared by the task list and the DLQ view."""

from __future__ import annotations

from api.schemas import TaskPage, TaskPublic
from core.states import State
from core.store import AsyncTaskStore


async def load_page(store: AsyncTaskStore, state: State | None, limit: int, cursor: str | None) -> TaskPage:
    """Newest first from the state's index (all tasks when `state` is None); ids deleted between
    the two reads are skipped, so a page may be short but never holds a ghost."""
    page = await store.page(state, limit, cursor)
    tasks = await store.get_many(page.ids)
    return TaskPage(items=[TaskPublic.from_task(t) for t in tasks], next_cursor=page.cursor)
