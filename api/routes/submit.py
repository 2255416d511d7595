"""Submit routes, built from the task-type registry: `POST /api/v1/tasks/{type}/` and
`POST /api/v1/tasks/{type}/bulk` for each registered type, each with its own request schema, and
`GET /api/v1/task-types`. Nothing here names a type: a new type gets its routes by registering.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.auth import ANONYMOUS, Principal, SubmitDep
from api.deps import SettingsDep, StoreDep, type_names
from api.errors import ApiError
from api.routes import add_both_slashes, errors_doc
from api.schemas import BulkAccepted, TaskAccepted, TaskTypeInfo
from core.keys import DEFAULT_PRIORITY, PRIORITIES
from core.settings import Settings
from core.store import AsyncTaskStore, Created
from core.task import Task
from tasktypes.base import Refusal, TaskType, provider_required

log = logging.getLogger("api.routes.tasks")
PREFIX = "/api/v1/tasks"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Repeat a submit safely: the same key within IDEMPOTENCY_TTL_SECONDS returns the task(s) "
        "the first submit created (with `Idempotent-Replayed: true`), even for concurrent duplicates.",
    ),
]

# The one body field every type's submit takes beside the type's own input: where the task stands
# in the queue, not what it asks, so it is stored on the task and never in its `params`.
PRIORITY = "priority"
PRIORITY_DOC = (f"0-9: pending work runs by priority, lower first (strictly), then in turns between API keys; "
                f"{DEFAULT_PRIORITY} when absent. A JSON integer: " '"5", 5.0 and true are refused.')  # fmt: skip

types_router = APIRouter(prefix="/api/v1/task-types", tags=["tasks"])
unknown_router = APIRouter(prefix=PREFIX, tags=["tasks"])


# --- the checks of a submit, in the order a client meets them --------------------------------
def _check_provider(task_type: TaskType, settings: Settings) -> None:
    """A type without an offline answer is refused while the offline provider runs: accepted, it
    could only end in the DLQ."""
    if settings.llm_uses_offline and not task_type.answers_offline:
        raise ApiError(422, "provider_required", provider_required(task_type.name))


def _checked(task_type: TaskType, body: BaseModel, settings: Settings, loc: tuple[str | int, ...]) -> tuple[str, str]:
    """(content, params as JSON) of one input, once checked: the size limits (413), what the
    settings refuse of it and whether Redis can store it (422, naming the field)."""
    size = task_type.size_of(body)
    where = f"item {loc[-1]}: " if len(loc) > 1 else ""
    if size > settings.max_content_chars:
        message = f"{where}content has {size} characters; the limit is {settings.max_content_chars}"
        raise ApiError(413, "content_too_large", message)
    if task_type.long_input == "refuse" and size > settings.chunk_chars:
        message = (f"{where}input has {size} characters; {task_type.name} takes at most CHUNK_CHARS "
                   f"({settings.chunk_chars}) in one call, the model's context")  # fmt: skip
        raise ApiError(413, "input_too_long", message)
    content, params = task_type.content_of(body), task_type.params_of(body)
    params.pop(PRIORITY, None)  # the queue's, not the type's: the worker rebuilds its input from params
    params_json = json.dumps(params, ensure_ascii=False, separators=(",", ":")) if params else ""
    refusals = [*task_type.refusals(body, settings)]
    if not _storable(content + params_json):
        refusals.append(Refusal("", "must be valid Unicode (it holds a lone surrogate)"))
    if refusals:
        errors = [{"type": "value_error", "loc": (*loc, r.field) if r.field else loc, "msg": r.message, "input": None}
                  for r in refusals]  # fmt: skip
        raise RequestValidationError(errors)
    return content, params_json


def _storable(text: str) -> bool:
    """Whether Redis can store the text: a type's own free-form field (a str of a type loaded by
    TASK_TYPE_MODULES) may hold a lone surrogate, which JSON allows and UTF-8 cannot encode; its
    script would refuse it, a 500. The built-in types refuse it field by field."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


async def _rate_limit(store: AsyncTaskStore, settings: Settings, principal: Principal, cost: int) -> None:
    """Each key's submissions are a token bucket in Redis (SUBMIT_RATE_PER_SECOND, burst
    SUBMIT_RATE_BURST), shared by every API replica; a bulk costs one token per item."""
    if principal.anonymous:  # no keys configured: there is no one to count against
        return
    bucket = f"submit:{principal.id}"
    wait = await store.take_token(bucket, settings.submit_rate_per_second, settings.submit_rate_burst, cost)
    if wait > 0:
        log.info("key %s rate-limited for %.2fs (%d tasks asked)", principal.id, wait, cost)
        retry_after = str(max(1, math.ceil(wait)))
        message = f"too many submissions; retry in {retry_after}s"
        raise ApiError(429, "rate_limited", message, {"Retry-After": retry_after})


def _priority_of(body: BaseModel) -> int:
    """The body's priority (a body built from the type's own input model has none: the default)."""
    priority: int = getattr(body, PRIORITY, DEFAULT_PRIORITY)
    return priority


def _new_task(
    task_id: str, task_type: TaskType, checked: tuple[str, str], priority: int, settings: Settings, owner: str
) -> Task:
    content, params = checked
    return Task(id=task_id, task_type=task_type.name, content=content, params=params,
                max_retries=settings.max_retries, priority=priority, owner=owner)  # fmt: skip


async def submit_tasks(
    store: AsyncTaskStore,
    settings: Settings,
    task_type: TaskType,
    bodies: Sequence[BaseModel],
    idempotency_key: str | None,
    principal: Principal = ANONYMOUS,
    bulk: bool = False,
) -> tuple[Created, list[Task]]:
    """Check, then store and queue new tasks of `task_type` in one atomic step, owned by
    `principal`'s key, each at its body's priority. A repeated idempotency key creates nothing;
    the tasks returned are then the stored ones, as they are now."""
    _check_provider(task_type, settings)
    inputs = [_checked(task_type, body, settings, ("body", "items", n) if bulk else ("body",))
              for n, body in enumerate(bodies)]  # fmt: skip
    await _rate_limit(store, settings, principal, len(bodies))
    owner = principal.owner
    # Idempotency keys are per API key: another client's key of the same name is another key.
    scoped_key = f"{owner}:{idempotency_key}" if owner and idempotency_key else idempotency_key or ""
    shard = store.shard_for(scoped_key)  # one shard for the whole submit: it stays one atomic step
    tasks = [_new_task(store.new_task_id(shard), task_type, checked, _priority_of(body), settings, owner)
             for checked, body in zip(inputs, bodies, strict=True)]  # fmt: skip
    created = await store.create_many(tasks, scoped_key, settings.idempotency_ttl_seconds * 1000)
    if created.replayed:
        log.info("submit replayed for an idempotency key: %s", ", ".join(created.ids))
        return created, await store.get_many(created.ids)
    _log_submitted(tasks, task_type.name)
    return created, tasks


def _log_submitted(tasks: list[Task], task_type: str) -> None:
    """One INFO line per submit: a bulk of 100 would otherwise write 100. Each id stays findable
    at DEBUG, and in the task's own history."""
    if len(tasks) == 1:
        log.info("task %s submitted (%s, %d chars)", tasks[0].id, task_type, len(tasks[0].content))
        return
    chars = sum(len(t.content) for t in tasks)
    first, last = tasks[0].id, tasks[-1].id
    log.info("%d tasks submitted in bulk (%s, %d chars): %s … %s", len(tasks), task_type, chars, first, last)
    for task in tasks:
        log.debug("task %s submitted (%s, %d chars)", task.id, task_type, len(task.content))


# --- replies ------------------------------------------------------------------------------------
_ANY_ID = "00000000-0000-0000-0000-000000000000"


def accepted_body(task: Task) -> TaskAccepted:
    return TaskAccepted(task_id=task.id, task_type=task.task_type, state=task.state, created_at=task.created_at)


def _task_path(app: Any) -> str:
    """The task route's path for a placeholder id, looked up once per app: `url_path_for` tries
    every route in turn (raising NoMatchFound for each), a visible share of a submit's CPU."""
    path: str | None = getattr(app.state, "task_path", None)
    if path is None:
        path = app.state.task_path = str(app.url_path_for("get_task", task_id=_ANY_ID))
    return path


def _replayed(response: Response, created: Created, tasks: list[Task]) -> None:
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
        if len(tasks) != len(created.ids):  # deleted between the two reads: nothing left to show
            raise ApiError(409, "idempotency_key_reused", "the tasks this key created are gone; use a new key")


# --- the routes of one type ---------------------------------------------------------------------
def _signature(body_model: type[BaseModel], *, with_request: bool) -> inspect.Signature:
    """The endpoint's parameters for FastAPI: the type's own body model, then the shared ones."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    names: list[tuple[str, Any]] = [("body", body_model), ("store", StoreDep), ("settings", SettingsDep)]
    names += [("principal", SubmitDep), ("response", Response)]
    if with_request:
        names.append(("request", Request))
    params = [inspect.Parameter(name, kind, annotation=annotation) for name, annotation in names]
    params.append(inspect.Parameter("idempotency_key", kind, default=None, annotation=IdempotencyKey))
    return inspect.Signature(params)


def body_model(task_type: TaskType) -> type[BaseModel]:
    """The body of one submit: the type's input model plus `priority` (so every type takes it, and
    no type has to declare it). Named as the input model, whose place it takes in the OpenAPI
    document. A type whose input already has a `priority` field is refused: the two would clash."""
    create = task_type.Create
    if any(PRIORITY in (name, field.alias) for name, field in create.model_fields.items()):
        raise ValueError(f"task type {task_type.name!r}: its input model {create.__name__} has a {PRIORITY!r} field, "
                         "which every submit takes for the queue's order; rename the type's field")  # fmt: skip
    # strict: a priority is a JSON integer; lax mode would take true as 1 and "5" as 5.
    field = Field(DEFAULT_PRIORITY, ge=min(PRIORITIES), le=max(PRIORITIES), strict=True, description=PRIORITY_DOC)
    model: type[BaseModel] = create_model(create.__name__, __base__=create, __doc__=create.__doc__,
                                          priority=(int, field))  # fmt: skip
    return model


def bulk_model(task_type: TaskType, body: type[BaseModel]) -> type[BaseModel]:
    """`{"items": [<body>, …]}` (`body`: see `body_model`), named after the type's input model."""
    name = task_type.Create.__name__.removesuffix("Create") + "BulkCreate"
    doc = (f"Body of a bulk submit of {task_type.name}: up to BULK_MAX_ITEMS inputs, stored and queued in one step, "
           "each at its own priority.")  # fmt: skip
    items: Any = list[body]  # type: ignore[valid-type]  # a model known only at run time
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(title=name), __doc__=doc,
                                          items=(items, Field(min_length=1)))  # fmt: skip
    return model


def _one(task_type: TaskType, body_type: type[BaseModel]) -> Callable[..., Any]:
    async def submit(
        body: BaseModel, store: AsyncTaskStore, settings: Settings, principal: Principal, response: Response,
        request: Request, idempotency_key: str | None = None,
    ) -> TaskAccepted:  # fmt: skip
        created, tasks = await submit_tasks(store, settings, task_type, [body], idempotency_key, principal)
        _replayed(response, created, tasks)
        response.headers["Location"] = _task_path(request.app).replace(_ANY_ID, tasks[0].id)
        return accepted_body(tasks[0])

    submit.__signature__ = _signature(body_type, with_request=True)  # type: ignore[attr-defined]
    submit.__doc__ = (f"Queue one {task_type.name} task. {task_type.description} "
                      "Its result appears on the task at the `Location` header.")  # fmt: skip
    return submit


def _bulk(task_type: TaskType, body_type: type[BaseModel]) -> Callable[..., Any]:
    async def submit_bulk(
        body: Any, store: AsyncTaskStore, settings: Settings, principal: Principal, response: Response,
        idempotency_key: str | None = None,
    ) -> BulkAccepted:  # fmt: skip
        if len(body.items) > settings.bulk_max_items:
            raise ApiError(413, "too_many_items", f"{len(body.items)} items; the limit is {settings.bulk_max_items}")
        created, tasks = await submit_tasks(store, settings, task_type, body.items, idempotency_key, principal, True)
        _replayed(response, created, tasks)
        return BulkAccepted(items=[accepted_body(t) for t in tasks])

    signature = _signature(bulk_model(task_type, body_type), with_request=False)
    submit_bulk.__signature__ = signature  # type: ignore[attr-defined]
    submit_bulk.__doc__ = (f"Queue up to BULK_MAX_ITEMS {task_type.name} tasks in one atomic step: "
                           "all are stored, or (413, 422) none.")  # fmt: skip
    return submit_bulk


def router_for(types: list[TaskType]) -> APIRouter:
    """The submit routes of every registered type (registered before `/{task_id}`, so that no
    id can shadow them). Raises ValueError for a type whose input clashes with `priority`."""
    router = APIRouter(prefix=PREFIX, tags=["tasks"])
    statuses = errors_doc(409, 413, 422, 429)
    for task_type in types:
        path, body_type = f"/{task_type.name}", body_model(task_type)
        add_both_slashes(router, "POST", path, _one(task_type, body_type), status_code=202,
                         response_model=TaskAccepted, responses=statuses, name=f"submit_{task_type.name}",
                         summary=f"Submit {task_type.name}")  # fmt: skip
        router.add_api_route(f"{path}/bulk", _bulk(task_type, body_type), methods=["POST"], status_code=202,
                             response_model=BulkAccepted, responses=statuses, name=f"submit_{task_type.name}_bulk",
                             summary=f"Submit {task_type.name} in bulk")  # fmt: skip
    return router


# --- what there is to submit --------------------------------------------------------------------
@types_router.get("", response_model=list[TaskTypeInfo], responses=errors_doc())
async def list_task_types(request: Request, settings: SettingsDep, principal: SubmitDep) -> list[TaskTypeInfo]:
    """Every task type this API accepts, with its input's JSON Schema (the body of its submit
    route, which also takes `priority`: 0-9, default 5, the same for every type and so not in the
    schema), its result format, what it does with long input, and whether it can run now (a type
    without an offline answer cannot while no LLM provider is configured)."""
    types: list[TaskType] = request.app.state.task_types
    return [TaskTypeInfo.of(t, settings.llm_uses_offline, f"{PREFIX}/{t.name}/") for t in types]


async def _unknown(task_type: str, request: Request, principal: SubmitDep) -> Response:
    """A submit to a type that is not registered: 404 naming the types there are."""
    names = ", ".join(type_names(request))
    raise ApiError(404, "unknown_task_type", f"no task type {task_type!r}; the types are: {names}")


for _path in ("/{task_type}", "/{task_type}/", "/{task_type}/bulk"):
    unknown_router.add_api_route(_path, _unknown, methods=["POST"], include_in_schema=False, responses=errors_doc(404))
