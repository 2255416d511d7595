"""Request dependencies: the app's settings and stores, and the parsed path and query parameters.

All are `async def` although none awaits: FastAPI runs a plain `def` dependency in its thread
pool, a thread hop per dependency per request (about a tenth of the API's CPU on a submit).

Parsers raise the API's own errors, so a bad id, status, limit or cursor gets a stable code and
never reaches Redis (where a malformed cursor would be a 500).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from api.auth import KeyRing
from api.breaker import BreakerControl
from api.errors import ApiError
from core.errors import TaskNotFound
from core.keys import PRIORITIES
from core.settings import Settings
from core.shards import decode_cursor
from core.states import State
from core.store import CURSOR_SOURCES, AsyncTaskStore, TaskStore

DEFAULT_PAGE = 50


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _store(request: Request) -> AsyncTaskStore:
    store: AsyncTaskStore = request.app.state.store
    return store


async def _sync_store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.sync_store
    return store


async def _breaker(request: Request) -> BreakerControl:
    breaker: BreakerControl = request.app.state.breaker
    return breaker


async def _keyring(request: Request) -> KeyRing:
    keyring: KeyRing = request.app.state.keyring
    return keyring


SettingsDep = Annotated[Settings, Depends(_settings)]
KeyRingDep = Annotated[KeyRing, Depends(_keyring)]
BreakerDep = Annotated[BreakerControl, Depends(_breaker)]
StoreDep = Annotated[AsyncTaskStore, Depends(_store)]
SyncStoreDep = Annotated[TaskStore, Depends(_sync_store)]


def canonical_uuid(value: str) -> str | None:
    """`value` in the form ids are stored in (lower-case, hyphenated), or None if it is no UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


async def _task_id(task_id: str) -> str:
    # Ids are UUIDs, so anything else names no task: a 404 like any unknown id, without a Redis call.
    canonical = canonical_uuid(task_id)
    if canonical is None:
        raise TaskNotFound(task_id)
    return canonical


async def _status(
    status: Annotated[str | None, Query(description="Only tasks in this state (case-insensitive).")] = None,
) -> State | None:
    if not status:
        return None
    try:
        return State(status.upper())
    except ValueError:
        allowed = ", ".join(s.value for s in State)
        raise ApiError(422, "invalid_status", f"unknown status {status!r}; expected one of {allowed}") from None


def type_names(request: Request) -> list[str]:
    """The names of the registered task types (the app loaded them at start-up), sorted."""
    return sorted(t.name for t in request.app.state.task_types)


async def _type_names(request: Request) -> list[str]:
    return type_names(request)


def registered_type(request: Request, name: str, loc: tuple[str, ...]) -> str:
    """`name` if it is a registered task type; else a 422 `validation_error` at `loc` naming the types."""
    names = type_names(request)
    if name not in names:
        message = f"unknown task type {name!r}; expected one of {', '.join(names)}"
        raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": message}])
    return name


async def _task_type(
    request: Request,
    task_type: Annotated[str | None, Query(description="Only tasks of this type (see /api/v1/task-types).")] = None,
) -> str | None:
    return registered_type(request, task_type, ("query", "task_type")) if task_type else None


async def _limit(settings: SettingsDep, limit: Annotated[int | None, Query(description="Page size.")] = None) -> int:
    if limit is None:
        return min(DEFAULT_PAGE, settings.list_page_max)
    if not 1 <= limit <= settings.list_page_max:
        raise ApiError(422, "invalid_limit", f"limit must be between 1 and {settings.list_page_max}")
    return limit


def _one_cursor(cursor: str) -> bool:
    """Whether `cursor` is one shard's listing cursor: "score:id", maybe ":tag"."""
    score, _, rest = cursor.partition(":")
    last_id, tagged, tag = rest.partition(":")
    bad_tag = bool(tagged) and tag not in CURSOR_SOURCES
    return score.isascii() and score.isdigit() and canonical_uuid(last_id) == last_id and not bad_tag


async def _cursor(
    store: StoreDep,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> str | None:
    if not cursor:
        return None
    shards = len(getattr(store, "shards", [store]))
    if shards == 1:
        fine = _one_cursor(cursor)
    else:  # one position per shard (core/shards.py); "" for a shard done, null before its first page
        positions = decode_cursor(cursor, shards)
        fine = positions is not None and all(p is None or p == "" or _one_cursor(p) for p in positions)
    if not fine:
        raise ApiError(422, "invalid_cursor", "cursor is not one this API returned; start again without it")
    return cursor


async def _offset(
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> int:
    if not cursor:
        return 0
    if not (cursor.isascii() and cursor.isdigit()):
        raise ApiError(422, "invalid_cursor", "cursor is not one this API returned; start again without it")
    return int(cursor)


# A plain query parameter (FastAPI checks the range: a 422 naming `["query", "priority"]`); give it `= None`.
PriorityQuery = Annotated[
    int | None,
    Query(ge=min(PRIORITIES), le=max(PRIORITIES), description="Only tasks of this priority (0 runs first, 9 last)."),
]
TaskIdDep = Annotated[str, Depends(_task_id)]
OffsetDep = Annotated[int, Depends(_offset)]
StatusDep = Annotated[State | None, Depends(_status)]
TaskTypeDep = Annotated[str | None, Depends(_task_type)]
TypeNamesDep = Annotated[list[str], Depends(_type_names)]
LimitDep = Annotated[int, Depends(_limit)]
CursorDep = Annotated[str | None, Depends(_cursor)]
