"""Task types: each maps a task's content to its result. Adding a type is one handler here and
one submit route in the API; the queue machinery does not change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import LLMContextTooLong
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


# Below this many characters a piece, a context-length refusal is not about the text's length.
RECHUNK_FLOOR = 1000


def summarize(job: Job) -> Summary:
    """One call when the content fits the model's context (`CHUNK_CHARS`), else a map-reduce.

    A model whose context is smaller than CHUNK_CHARS assumed refuses with
    `context_length_exceeded`: the content is then split again in pieces half as long, within
    the same attempt, down to RECHUNK_FLOOR characters (then the refusal stands: input_rejected)."""
    content = job.task.content
    limit = job.provider.context_chars or len(content)
    while True:
        try:
            return _summarize(job, content, limit)
        except LLMContextTooLong:
            if limit // 2 < RECHUNK_FLOOR:
                raise
            limit //= 2
            job.progress(0, f"the model's context is smaller: pieces of {limit} characters")


def _summarize(job: Job, content: str, limit: int) -> Summary:
    if len(content) <= limit:
        return job.provider.summarize(content, "summarize", job.budget)
    return MapReduce(job.provider, job.budget, limit, job.progress, job.saved(), job.save).run(content)


HANDLERS: dict[str, Handler] = {"summarize": summarize}
