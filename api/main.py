"""The app factory. `uvicorn api.main:app` serves the module-level app; nothing connects at import.

Settings are resolved and the Redis clients created in the lifespan, so importing this module
reads no environment and opens no socket; a client connects on its first command.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

import tasktypes
from api import errors
from api.auth import OPEN_WARNING, KeyRing, check_routes
from api.breaker import BreakerControl
from api.middleware import BodyLimit, SettingsCors
from api.routes import health, metrics, openrouter, queues, submit, tasks, usage
from api.schemas import ErrorBody
from core.logs import setup_logging
from core.redis import Durability, async_client, redis_location, sync_client
from core.settings import Settings, get_settings
from core.shards import open_async_store, open_store

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _lifespan(settings: Settings | None) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        # A no-op when logging is already set up (`python -m api`, a test runner); needed under bare uvicorn.
        setup_logging(resolved.log_level)
        app.state.keyring = _keyring(resolved)
        aio, sync = async_client(resolved), sync_client(resolved)
        app.state.settings = resolved
        app.state.store = open_async_store(resolved, aio, Durability(resolved))
        # Only requeue-orphaned uses it: the sweep is the scheduler's synchronous code, run in a thread.
        app.state.sync_store = open_store(resolved, sync)
        # pybreaker's Redis storage expects bytes, so the breaker gets its own client.
        breaker_client = sync_client(resolved, decode=False)
        app.state.breaker = BreakerControl(resolved, breaker_client)
        log.info("api started (redis %s, prefix %r)", redis_location(resolved), resolved.redis_key_prefix)
        scrubber = SecretFilter(_secrets(resolved))
        for handler in logging.getLogger().handlers:
            handler.addFilter(scrubber)
        try:
            yield
        finally:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(scrubber)
            await aio.aclose()
            sync.close()
            breaker_client.close()

    return lifespan


def _keyring(settings: Settings) -> KeyRing:
    ring = KeyRing.from_settings(settings)
    if ring.open:
        # Loud on purpose: an open API on a reachable port lets anyone submit, read and delete.
        log.warning("=" * 72)
        log.warning("SECURITY: %s; set API_KEYS (python -m api.auth new <id> admin)", OPEN_WARNING)
        log.warning("=" * 72)
    else:
        log.info("api keys: %d configured (%s)", len(ring.keys), ", ".join(f"{k.id}:{k.scope}" for k in ring.keys))
    return ring


def _secrets(settings: Settings) -> list[str]:
    """Values no log line may carry: the LLM key and the Redis password."""
    values = [settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else ""]
    netloc = settings.redis_url.partition("://")[2].partition("/")[0]
    user_info, at, _host = netloc.rpartition("@")
    if at and ":" in user_info:
        values.append(user_info.partition(":")[2])
    return [v for v in values if len(v) >= 4]  # a 1-3 character "secret" would scrub ordinary words


class SecretFilter(logging.Filter):
    """Replaces known secrets in every record the API process logs (defence in depth: the code
    never passes them, but a library's error text might quote a URL)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            scrubbed = errors.scrub(message, self.secrets)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready app; `settings` default to the environment's, read at start-up."""
    app = FastAPI(
        title="AsyncTaskFlow",
        summary="Submit slow, flaky LLM work and follow it through a crash-safe Redis pipeline.",
        version="0.1.0",
        lifespan=_lifespan(settings),
    )
    errors.install(app)
    # The last added runs first: CORS wraps everything, so even a 413 carries its headers.
    app.add_middleware(BodyLimit)
    app.add_middleware(SettingsCors)
    app.state.task_types = tasktypes.load(settings or get_settings())
    # The types' submit routes first and the catch-all for unknown types last: neither may shadow
    # a route of the tasks router.
    routers = [submit.router_for(app.state.task_types), submit.types_router]
    routers += [m.router for m in (tasks, queues, usage, health, metrics, openrouter)] + [submit.unknown_router]
    for router in routers:
        check_routes(router.routes, ErrorBody)  # a route without an access decision stops here
        app.include_router(router)
    return app


app = create_app()
