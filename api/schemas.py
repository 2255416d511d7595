"""Request and response bodies. Timestamps are epoch milliseconds; "not yet" is null, never 0."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from core.states import State
from core.task import Task


def _not_blank(content: str) -> str:
    if not content.strip():
        raise ValueError("content must not be blank")
    return content


class ErrorBody(BaseModel):
    """Every error response: a stable `code` to branch on and a `message` for people."""

    code: str = Field(examples=["task_not_found"])
    message: str


class TaskCreate(BaseModel):
    """Body of a submit route. Its length limit (MAX_CONTENT_CHARS) is checked by the route, as a 413."""

    content: Annotated[str, Field(min_length=1, description="The text to work on."), AfterValidator(_not_blank)]


class TaskAccepted(BaseModel):
    """Reply to a submit: the task is stored and queued; poll the `Location` header for its outcome."""

    task_id: str
    task_type: str
    state: State
    created_at: int


class TaskPublic(BaseModel):
    """A task as clients see it: the attempt token and other internals stay private."""

    task_id: str
    task_type: str
    state: State
    content: str
    result: str | None
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

    @classmethod
    def from_task(cls, task: Task) -> TaskPublic:
        """The stored record's "" and 0 (its "not yet") become null."""
        return cls(
            task_id=task.id,
            task_type=task.task_type,
            state=task.state,
            content=task.content,
            result=task.result or None,
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
        )


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


class QueueStatus(BaseModel):
    """The pipeline at a glance."""

    queues: QueueDepths
    states: dict[State, int]
    retry_ratio: float = Field(description="Current probability that a consumer prefers the retry list.")
    workers: int = Field(description="Consumers whose heartbeat is alive.")


class Health(BaseModel):
    """Liveness of the API and its Redis; 503 when Redis is unreachable."""

    status: Literal["ok", "unavailable"]
    redis: Literal["ok", "unreachable"]
    workers: int | None
