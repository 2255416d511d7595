"""The reset tool on a real Redis: it reads without --confirm, deletes only this deployment's keys
with it (a foreign key and another deployment's keys survive), hands in-flight work back with
--drain, and cleans only our Celery queues in the broker database with --broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.keys import Keys, shard_keys
from core.redis import redis_location
from core.settings import Settings
from core.shards import new_task_id, open_store
from core.states import State
from core.store import TaskStore, new_token
from core.task import Task
from tests.core.helpers import queued
from utils.reset_redis import main

ROOT = Path(__file__).resolve().parents[2]
BROKER_DB = 3
CONSUMER = "box:1:abc"


@pytest.fixture(scope="module")
def redis_url(redis_proc: tuple[subprocess.Popen[bytes], int]) -> str:
    """A database of its own (4): these tests compare every key in it, and another test's
    leftover timer (a runner's metrics flush) may still write into the shared database 2."""
    return f"redis://127.0.0.1:{redis_proc[1]}/4"


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> Settings:
    return Settings(_env_file=None, redis_url=redis_url, redis_key_prefix=key_prefix, celery_broker_db=BROKER_DB)


@pytest.fixture
def store(real_redis: redis.Redis, key_prefix: str) -> TaskStore:
    return TaskStore(real_redis, Keys(key_prefix))


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + f"/{BROKER_DB}", decode_responses=True)
    yield client
    client.close()


def busy_deployment(store: TaskStore) -> dict[str, str]:
    """Three tasks waiting, one ACTIVE in a live consumer's in-flight list, an open breaker."""
    ids = [store.create(Task(uuid.uuid4().hex, "summarize", "x", max_retries=3)).id for _ in "abcd"]
    store.beat(CONSUMER, {"pid": 1}, ttl=60)
    claim = store.claim(CONSUMER, new_token(), prefer_retry=False)
    assert claim.status == "ok"
    store.r.set(f"{store.keys.breaker_namespace}:pybreaker:state", "open")
    return {"active": claim.task_id, "waiting": ",".join(i for i in ids if i != claim.task_id)}


def foreign_keys(client: redis.Redis) -> dict[str, str]:
    """Keys that are not this deployment's: another app's, and another deployment's (prefix)."""
    names = {"session:42": "x", "other-app:task:1": "x", f"z{uuid.uuid4().hex[:6]}:task:1": "x"}
    for name, value in names.items():
        client.set(name, value)
    return names


def dump(client: redis.Redis) -> dict[str, str]:
    return {name: str(client.dump(name)) for name in client.scan_iter(count=1000)}


def ours(client: redis.Redis, keys: Keys) -> list[str]:
    return [name for pattern in keys.all_patterns for name in client.scan_iter(match=pattern)]


def test_without_confirm_it_reports_and_changes_nothing(
    store: TaskStore, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    busy_deployment(store)
    foreign_keys(store.r)
    before = dump(store.r)
    assert main([], settings) == 0
    out = capsys.readouterr().out
    assert dump(store.r) == before
    assert "primary 3" in out and "PENDING 3" in out and "ACTIVE 1" in out
    assert "in flight: 1" in out and "live workers: 1 of 1 registered" in out
    assert f"keys:      {len(ours(store.r, store.keys))} belong" in out
    assert "nothing changed" in out
    assert settings.redis_url.split("//")[1] in out


def test_confirm_deletes_only_this_deployments_keys(
    store: TaskStore, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    busy_deployment(store)
    foreign = foreign_keys(store.r)
    assert main(["--confirm"], settings) == 0
    assert ours(store.r, store.keys) == []
    assert set(dump(store.r)) == set(foreign), "only our keys may go"
    out = capsys.readouterr().out
    assert f"{store.keys.task('*')}" in out and "deleted keys: " in out
    assert out.rstrip().endswith("keys:      0 belong to this deployment")


def test_keep_tasks_with_drain_hands_work_back_and_resets_only_the_runtime(
    store: TaskStore, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = busy_deployment(store)
    foreign = foreign_keys(store.r)
    assert main(["--confirm", "--keep-tasks", "--drain"], settings) == 0
    assert "handed back to the queue: 1" in capsys.readouterr().out
    active = store.get(tasks["active"])
    assert active.state == State.PENDING and active.retry_count == 0, "no retry spent"
    assert queued(store.r, store.keys)[:1] == [tasks["active"]], "back at the head of the queue"
    assert len(queued(store.r, store.keys)) == 4
    assert store.r.zcard(store.keys.state_index(State.ACTIVE)) == 0
    k = store.keys
    for pattern in (k.consumers, k.heartbeat("*"), k.inflight("*"), f"{k.breaker_namespace}:*"):
        assert list(store.r.scan_iter(match=pattern)) == [], pattern
    assert all(store.r.exists(name) for name in foreign)


def test_drain_alone_is_refused(settings: Settings) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--confirm", "--drain"], settings)
    assert exit_.value.code == 2


def test_broker_flag_removes_only_our_celery_queues(
    store: TaskStore, settings: Settings, broker: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = store.keys.dispatch_queue("box")
    other = Keys("someone-else:").dispatch_queue("box")
    broker.rpush(queue, "message")
    broker.rpush(other, "message")
    broker.sadd(f"_kombu.binding.{queue}", "binding")
    # kombu 5.7's bookkeeping of bindings: a permanent set per exchange, one shared deadline set.
    broker.sadd(f"_kombu.binding_permanent.{queue}", "binding")
    broker.zadd("_kombu.binding_deadlines", {queue: 1, other: 1})
    entries = {"t-ours": json.dumps([{}, queue, queue]), "t-other": json.dumps([{}, other, other])}
    broker.hset("unacked", mapping=entries)
    broker.zadd("unacked_index", {"t-ours": 1, "t-other": 1})
    try:
        main(["--confirm"], settings)
        assert broker.exists(queue), "without --broker the broker database is not touched"
        main(["--confirm", "--broker"], settings)
        assert not broker.exists(queue) and not broker.exists(f"_kombu.binding.{queue}")
        assert not broker.exists(f"_kombu.binding_permanent.{queue}")
        assert broker.zscore("_kombu.binding_deadlines", queue) is None
        assert broker.zscore("_kombu.binding_deadlines", other) == 1
        assert broker.lrange(other, 0, -1) == ["message"], "another deployment's queue survives"
        # Other tests' Celery workers share this database: look only at the two entries made here.
        assert not broker.hexists("unacked", "t-ours") and broker.hexists("unacked", "t-other")
        assert broker.zscore("unacked_index", "t-ours") is None and broker.zscore("unacked_index", "t-other") == 1
        assert f"deleted from the broker (database {BROKER_DB}): 5" in capsys.readouterr().out
    finally:
        broker.delete(queue, other, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        broker.zrem("_kombu.binding_deadlines", queue, other)
        broker.hdel("unacked", "t-ours", "t-other")
        broker.zrem("unacked_index", "t-ours", "t-other")


def test_broker_flag_cleans_a_redis_named_by_celery_broker_url_and_refuses_another_broker(
    store: TaskStore, settings: Settings, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = redis_url.rsplit("/", 1)[0] + "/6"
    broker = redis.Redis.from_url(elsewhere, decode_responses=True)
    queue = store.keys.dispatch_queue("box")
    broker.rpush(queue, "message")
    try:
        assert main(["--confirm", "--broker"], settings.model_copy(update={"celery_broker_url": elsewhere})) == 0
        assert not broker.exists(queue)
        assert "deleted from the broker (CELERY_BROKER_URL): 1" in capsys.readouterr().out
        busy_deployment(store)
        rabbit = settings.model_copy(update={"celery_broker_url": "amqp://guest:guest@127.0.0.1:5672//"})
        assert main(["--confirm", "--broker"], rabbit) == 2
        assert "not a Redis" in capsys.readouterr().out
        assert ours(store.r, store.keys), "refused before anything was deleted"
    finally:
        broker.delete(queue)
        broker.close()


def test_the_module_runs_as_a_command(store: TaskStore, settings: Settings, tmp_path: Path) -> None:
    """`docker compose run --rm reset` runs exactly this."""
    busy_deployment(store)
    url = settings.redis_url
    env = {**os.environ, "REDIS_URL": url, "REDIS_KEY_PREFIX": settings.redis_key_prefix, "PYTHONPATH": str(ROOT)}
    env["CELERY_BROKER_DB"] = str(BROKER_DB)
    result = subprocess.run(
        [sys.executable, "-m", "utils.reset_redis"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "PENDING 3" in result.stdout and "nothing changed" in result.stdout


def test_the_password_is_never_printed() -> None:
    settings = Settings(_env_file=None, redis_url="redis://:s3cret@redis:6380/4")
    assert redis_location(settings) == "redis://redis:6380/4"
    sentinel = settings.model_copy(update={"redis_sentinels": "s1:26379,s2:26379", "redis_sentinel_master": "m"})
    assert redis_location(sentinel) == "sentinel master 'm' via s1:26379,s2:26379, database 4"


def test_with_shards_it_counts_and_deletes_every_shards_keys(
    real_redis: redis.Redis, key_prefix: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    sharded = settings.model_copy(update={"redis_shards": 3})
    store = open_store(sharded, real_redis)
    for shard in range(3):  # a task on each shard, one of them ACTIVE in a consumer's in-flight list
        store.create(Task(new_task_id(shard, 3), "summarize", "x", max_retries=3))
    store.beat(CONSUMER, {"pid": 1}, ttl=60)
    assert store.claim(CONSUMER, new_token(), prefer_retry=False).status == "ok"
    foreign = foreign_keys(real_redis)
    assert main([], sharded) == 0
    out = capsys.readouterr().out
    assert "primary 2" in out and "PENDING 2" in out and "ACTIVE 1" in out and "in flight: 1" in out

    assert main(["--confirm"], sharded) == 0
    assert [name for keys in shard_keys(sharded) for name in ours(real_redis, keys)] == []
    assert set(dump(real_redis)) == set(foreign), "only our keys may go"
