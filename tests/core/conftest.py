"""Fixtures of the data-layer tests: a sync and an asyncio store over the same data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.cluster import RedisCluster

from core.keys import CLUSTER_TAG, Keys
from core.redis import AsyncCluster
from core.store import AsyncTaskStore, TaskStore
from tests.conftest import cluster_client
from tests.core.helpers import Stores

BACKENDS = ["fakeredis", "redis", "cluster"]


@pytest.fixture(params=BACKENDS)
def any_redis(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Any]:
    """The data-layer tests on fakeredis (Lua through lupa), a real Redis, and a real 3-master
    Redis Cluster (the same calls, routed by the deployment's hash tag)."""
    client: Any
    if request.param == "fakeredis":
        client = fakeredis.FakeRedis(decode_responses=True)
    elif request.param == "cluster":
        client = cluster_client(request.getfixturevalue("redis_cluster"))
    else:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


def keys_for(client: Any, prefix: str) -> Keys:
    """A test's key names: on the cluster, under the hash tag the product uses there."""
    return Keys(prefix, CLUSTER_TAG if isinstance(client, RedisCluster) else "")


@pytest.fixture
def store(any_redis: Any, key_prefix: str) -> TaskStore:
    return TaskStore(any_redis, keys_for(any_redis, key_prefix))


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> Iterator[Stores]:
    """The operator transitions live on the asyncio store; the others drive state with the sync one.

    A FakeAsyncRedis shares data with a FakeRedis only through one FakeServer; against the real
    server (or cluster) both clients simply open the same data. Each test gets its own event loop.
    """
    loop = asyncio.new_event_loop()
    sync_client: Any
    async_client: Any
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        sync_client = fakeredis.FakeRedis(server=server, decode_responses=True)
        async_client = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    elif request.param == "cluster":
        ports = request.getfixturevalue("redis_cluster")
        sync_client = cluster_client(ports)
        nodes = [AsyncClusterNode("127.0.0.1", ports[0])]
        async_client = AsyncCluster(startup_nodes=nodes, decode_responses=True)
        sync_client.flushdb()
    else:
        sync_client = redis.Redis.from_url(redis_url, decode_responses=True)
        async_client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = keys_for(sync_client, key_prefix)
    yield Stores(TaskStore(sync_client, keys), AsyncTaskStore(async_client, keys), loop)
    loop.run_until_complete(async_client.aclose())
    loop.close()
    sync_client.close()
