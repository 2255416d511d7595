"""Every error leaves the API as JSON `{"code": ..., "message": ...}` with a stable code.

Clients branch on `code`, people read `message`; a stack trace never reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    ClusterError,
    InvalidTransition,
    RedisClusterException,
    RedisConnectionError,
    RedisOutOfMemory,
    RedisTimeoutError,
    TaskNotFound,
)

log = logging.getLogger(__name__)

# What a request meets when Redis is down or restarting. OSError covers what the client does not
# wrap (a refused or reset socket, a builtin TimeoutError): in this API only Redis does network I/O.
# The cluster errors are those of a cluster pipeline (a command alone raises ClusterUnavailable).
REDIS_DOWN: tuple[type[Exception], ...] = (
    RedisConnectionError, RedisTimeoutError, OSError, RedisClusterException, ClusterError
)
REDIS_DOWN_MESSAGE = "Redis is unreachable; retry shortly"

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def redact_url(url: str) -> str:
    """A URL without the password in its user info (`redis://:***@host/0`), fit for a log or a reply."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    user_info, at, host = netloc.rpartition("@")
    if not sep or not at or ":" not in user_info:
        return url
    return f"{scheme}{sep}{user_info.partition(':')[0]}:***@{host}{slash}{path}"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret replaced by `***` (error text that may quote a URL or a key)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class ApiError(Exception):
    """A refusal the API decides itself (content too large, a bad cursor), with its status and code."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The one error body: `code` and `message`, plus any `extra` fields (the 422 `detail` list)."""
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status, headers=headers)


def describe(errors: Sequence[Any]) -> str:
    """One readable line for a validation failure, e.g. `body.content: Field required`."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors]
    return "; ".join(parts) or "invalid request"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers)


async def _task_not_found(request: Request, exc: Exception) -> JSONResponse:
    return error_response(404, "task_not_found", f"task {exc} not found")


async def _invalid_transition(request: Request, exc: Exception) -> JSONResponse:
    # The message names the current state ("task … is ACTIVE; cannot delete"), so a 409 explains itself.
    return error_response(409, "invalid_transition", str(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's `detail` list is kept for tools that read it; `ctx` is dropped (it may hold exceptions).
    detail = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    return error_response(422, "validation_error", describe(exc.errors()), detail=detail)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unreachable during %s %s: %s", request.method, request.url.path, exc)
    # A Redis restart takes seconds: tell clients a retry soon is worth it, rather than giving up.
    return error_response(503, "redis_unavailable", REDIS_DOWN_MESSAGE, headers={"Retry-After": "1"})


async def _redis_full(request: Request, exc: Exception) -> JSONResponse:
    log.error("redis out of memory during %s %s: %s", request.method, request.url.path, exc)
    # noeviction: Redis refuses the write rather than drop stored tasks, and nothing was stored.
    message = "Redis is out of memory (REDIS_MAXMEMORY); nothing was stored, retry once tasks have expired"
    return error_response(503, "redis_full", message, headers={"Retry-After": "30"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error during %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    """Register every handler; the most specific class wins (Starlette walks the MRO)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(TaskNotFound, _task_not_found)
    app.add_exception_handler(InvalidTransition, _invalid_transition)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_class in REDIS_DOWN:
        app.add_exception_handler(exc_class, _redis_down)
    app.add_exception_handler(RedisOutOfMemory, _redis_full)
    app.add_exception_handler(Exception, _unexpected)
