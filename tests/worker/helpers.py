"""Shared by the worker's tests: a provider asked for a summary, as the summarize type asks it."""

from __future__ import annotations

from tasktypes.base import Completion
from tasktypes.summarize import request
from worker.providers import Budget, Provider


def summarize(provider: Provider, content: str, budget: Budget | None = None) -> Completion:
    """One summarize call of `content` through `provider.complete`."""
    return provider.complete(request(content), budget)
