"""API fixtures: the real app on the session's private Redis, driven in-process through httpx.

Tasks reach ACTIVE, FAILED, DLQ… through the same store transitions the consumer and the worker
run, never by writing hashes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis
from fastapi import FastAPI

from api.main import create_app
from core.keys import Keys
from core.settings import Settings
from core.states import State
from core.store import TaskStore, new_token


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings(redis_url=redis_url, redis_key_prefix=key_prefix, list_page_max=20)


async def serve(app: FastAPI, raise_app_exceptions: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """A client for `app` with its lifespan running, as uvicorn would run it."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def client(settings: Settings, real_redis: redis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async for c in serve(create_app(settings)):
        yield c


@pytest.fixture
def networked(settings: Settings) -> Settings:
    """A provider is configured (the types without an offline answer are accepted); none is called here."""
    fields = {**settings.model_dump(), "openrouter_api_key": "k", "openrouter_fallback_models": "backup/model"}
    return Settings(**fields)


@pytest.fixture
async def api(networked: Settings, real_redis: redis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a provider configured (`networked`)."""
    async for c in serve(create_app(networked)):
        yield c


class Pipeline:
    """Plays the consumer and the worker with the sync store on the same keys as the app."""

    def __init__(self, store: TaskStore, consumer_id: str = "consumer-1") -> None:
        self.store, self.consumer_id = store, consumer_id
        self.tokens: dict[str, str] = {}

    def claim(self, task_id: str) -> None:
        """PENDING → ACTIVE; `task_id` must be next in line."""
        token = new_token()
        claim = self.store.claim(self.consumer_id, token, prefer_retry=False)
        assert (claim.status, claim.task_id) == ("ok", task_id)
        self.tokens[task_id] = token

    def complete(self, task_id: str) -> None:
        self.claim(task_id)
        self.store.complete(task_id, self.consumer_id, self.tokens[task_id], "a summary", "offline")

    def fail(self, task_id: str, target: State = State.FAILED, error: str = "input rejected") -> None:
        self.claim(task_id)
        self.store.fail(task_id, self.consumer_id, self.tokens[task_id], target, error, "input_rejected")

    def schedule(self, task_id: str, delay: float = 60.0) -> None:
        self.claim(task_id)
        self.store.schedule_retry(task_id, self.consumer_id, self.tokens[task_id], delay, "timeout", "transient")


@pytest.fixture
def sync_store(real_redis: redis.Redis, key_prefix: str) -> TaskStore:
    return TaskStore(real_redis, Keys(key_prefix))


@pytest.fixture
def pipeline(sync_store: TaskStore) -> Pipeline:
    return Pipeline(sync_store)


async def submit(client: httpx.AsyncClient, content: str = "A text worth summarizing.") -> str:
    """Submit a summarize task and return its id."""
    response = await client.post("/api/v1/tasks/summarize/", json={"content": content})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def state_of(client: httpx.AsyncClient, task_id: str) -> str:
    response = await client.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    state: str = response.json()["state"]
    return state
