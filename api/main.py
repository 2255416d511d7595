"""The app factory. `uvicorn api.main:app` serves the module-level app; nothing connects at import.

Settings are resolved and the Redis clients created in the lifespan, so importing this module
reads no environment and opens no socket; a client connects on its first command.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.breaker import BreakerControl
from api.routes import health, metrics, queues, tasks
from core.keys import Keys
from core.logs import setup_logging
from core.redis import async_client, sync_client
from core.settings import Settings, get_settings
from core.store import AsyncTaskStore, TaskStore

log = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _lifespan(settings: Settings | None) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        # A no-op when logging is already set up (`python -m api`, a test runner); needed under bare uvicorn.
        setup_logging(resolved.log_level)
        keys = Keys(resolved.redis_key_prefix)
        aio, sync = async_client(resolved), sync_client(resolved)
        app.state.settings = resolved
        app.state.store = AsyncTaskStore(aio, keys)
        # Only requeue-orphaned uses it: the sweep is the scheduler's synchronous code, run in a thread.
        app.state.sync_store = TaskStore(sync, keys)
        # pybreaker's Redis storage expects bytes, so the breaker gets its own client.
        breaker_client = sync_client(resolved, decode=False)
        app.state.breaker = BreakerControl(resolved, breaker_client)
        log.info("api started (redis %s, prefix %r)", _redacted(resolved.redis_url), resolved.redis_key_prefix)
        try:
            yield
        finally:
            await aio.aclose()
            sync.close()
            breaker_client.close()

    return lifespan


def _redacted(url: str) -> str:
    """The Redis URL without its password, fit for a log line."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready app; `settings` default to the environment's, read at start-up."""
    app = FastAPI(
        title="AsyncTaskFlow",
        summary="Submit slow, flaky LLM work and follow it through a crash-safe Redis pipeline.",
        version="0.1.0",
        lifespan=_lifespan(settings),
    )
    errors.install(app)
    for module in (tasks, queues, health, metrics):
        app.include_router(module.router)
    return app


app = create_app()
