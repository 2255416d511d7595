"""Task types: each maps a task's content to its result. Adding a type is one handler here and
one submit route in the API; the queue machinery does not change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.task import Task
from worker.chunking import MapReduce
from worker.providers import Budget, Provider, Summary


@dataclass
class Job:
    """What a handler gets for one attempt: the task, the provider, the attempt's budget (its
    deadline and the fleet's rate limit), and the attempt-guarded reports of its progress and of
    the pieces it finished (`saved()` reads those earlier attempts kept)."""

    task: Task
    provider: Provider
    budget: Budget
    progress: Callable[[int, str], None]
    saved: Callable[[], dict[str, str]]
    save: Callable[[str, str], None]


Handler = Callable[[Job], Summary]


def summarize(job: Job) -> Summary:
    """One call when the content fits the model's context (`CHUNK_CHARS`), else a map-reduce."""
    limit = job.provider.context_chars
    content = job.task.content
    if not limit or len(content) <= limit:
        return job.provider.summarize(content, "summarize", job.budget)
    return MapReduce(job.provider, job.budget, limit, job.progress, job.saved(), job.save).run(content)


HANDLERS: dict[str, Handler] = {"summarize": summarize}
