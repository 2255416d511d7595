"""Task types: each maps a task's content to its result. Adding a type is one handler here and
one submit route in the API; the queue machinery does not change."""

from __future__ import annotations

from collections.abc import Callable

from core.task import Task
from worker.providers import Provider, Summary

Handler = Callable[[Provider, Task], Summary]


def summarize(provider: Provider, task: Task) -> Summary:
    return provider.summarize(task.content)


HANDLERS: dict[str, Handler] = {"summarize": summarize}
