"""The task-type registry: every kind of LLM job the service runs, by name.

The built-in types are the modules of BUILT_IN; TASK_TYPE_MODULES names more (your own package's
modules). Each module registers its type when imported (`register(MyType())` at its end). The API
and the worker call `load(settings)` at start-up, so both know the same types: a type that only
one of them knew would be accepted and then never run (the worker sends such a task to the DLQ).
"""

from __future__ import annotations

import importlib
import re

from core.settings import Settings
from tasktypes.base import TaskType

BUILT_IN = ("tasktypes.summarize", "tasktypes.translate", "tasktypes.extract", "tasktypes.chat")

# A type's name is a path segment of its submit route; these segments are the task routes' own.
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_RESERVED = frozenset({"statistics", "requeue-orphaned"})

_types: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    """Add a type; refuses a malformed or reserved name and a name already taken by another type."""
    name = task_type.name
    if not _NAME.match(name) or name in _RESERVED:
        raise ValueError(f"task type name {name!r}: lower-case letters, digits, '-' and '_', not {sorted(_RESERVED)}")
    known = _types.get(name)
    if known is not None and type(known) is not type(task_type):
        raise ValueError(f"task type {name!r} is registered twice ({type(known).__name__}, {type(task_type).__name__})")
    _types[name] = task_type
    return task_type


def load(settings: Settings) -> list[TaskType]:
    """Import the built-in types and TASK_TYPE_MODULES (each registers itself); the types, by name."""
    for module in (*BUILT_IN, *settings.task_type_module_list):
        importlib.import_module(module)
    return all_types()


def get(name: str) -> TaskType | None:
    """The registered type of that name, or None."""
    return _types.get(name)


def all_types() -> list[TaskType]:
    return [_types[name] for name in sorted(_types)]
