"""Fixtures of the data-layer tests: a sync and an asyncio store over the same data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import fakeredis
import pytest
import redis
import redis.asyncio as aioredis

from core.keys import Keys
from core.store import AsyncTaskStore, TaskStore
from tests.core.helpers import Stores


@pytest.fixture(params=["fakeredis", "redis"])
def stores(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> Iterator[Stores]:
    """The operator transitions live on the asyncio store; the others drive state with the sync one.

    A FakeAsyncRedis shares data with a FakeRedis only through one FakeServer; against the real
    server both clients simply open the same database. Each test gets its own event loop.
    """
    loop = asyncio.new_event_loop()
    sync_client: redis.Redis
    async_client: aioredis.Redis
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        sync_client = fakeredis.FakeRedis(server=server, decode_responses=True)
        async_client = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    else:
        sync_client = redis.Redis.from_url(redis_url, decode_responses=True)
        async_client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(key_prefix)
    yield Stores(TaskStore(sync_client, keys), AsyncTaskStore(async_client, keys), loop)
    loop.run_until_complete(async_client.aclose())
    loop.close()
    sync_client.close()
