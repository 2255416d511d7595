"""ASGI middleware configured from the app's settings (resolved in the lifespan, so they are
built at the first request): the request body limit and CORS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.middleware.cors import CORSMiddleware

from api.errors import error_response
from core.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# What the dashboard (and any browser client) sends and must be able to read back.
CORS_HEADERS = ["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "Last-Event-ID"]
CORS_EXPOSED = ["Location", "Retry-After", "Idempotent-Replayed"]


def _settings(scope: Scope) -> Settings:
    settings: Settings = scope["app"].state.settings
    return settings


class BodyLimit:
    """Refuses a body over MAX_BODY_BYTES before anything parses it: a declared Content-Length over
    the limit gets its 413 without a byte read; a body without one is counted as it arrives and
    cut off at the limit, its 413 replacing whatever the route answered to the cut-off body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _settings(scope).max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await error_response(400, "invalid_content_length", "Content-Length is not a number")(scope, receive, send)
        elif declared is not None and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
        else:
            await _CountedRequest(limit, scope, receive, send).run(self.app)


def _too_large(limit: int) -> ASGIApp:
    return error_response(413, "body_too_large", f"request body over {limit} bytes (MAX_BODY_BYTES)")


class _CountedRequest:
    """One request whose body is counted as the app reads it."""

    def __init__(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit, self.scope, self.receive, self.send = limit, scope, receive, send
        self.seen, self.over, self.answered = 0, False, False

    async def run(self, app: ASGIApp) -> None:
        await app(self.scope, self._receive, self._send)

    async def _receive(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.over = True
                raise OverflowError("request body over MAX_BODY_BYTES")  # the route's read fails here
        return message

    async def _send(self, message: Message) -> None:
        if not self.over:
            await self.send(message)
        elif not self.answered and message["type"] == "http.response.start":
            self.answered = True
            await _too_large(self.limit)(self.scope, self.receive, self.send)


class SettingsCors:
    """Starlette's CORS middleware with the origins of CORS_ORIGINS (by default only the
    dashboard's). Preflight requests are answered here, before any access decision."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._cors is None:
            self._cors = CORSMiddleware(
                self.app,  # type: ignore[arg-type]
                allow_origins=_settings(scope).cors_origin_list,
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=CORS_HEADERS,
                expose_headers=CORS_EXPOSED,
                max_age=600,
            )
        await self._cors(scope, receive, send)
