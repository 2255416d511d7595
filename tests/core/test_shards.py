"""Logical shards (REDIS_SHARDS, issue 19): a task's id names its shard, its calls go there,
figures are summed, listings merged. The same 60 tasks on 3 shards and on 1 shard read the same,
on fakeredis, a real Redis and a real 3-master cluster (where the shards sit on 3 masters)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.crc import key_slot

from core.keys import Keys, shard_tags
from core.redis import AsyncCluster
from core.settings import Settings
from core.shards import (
    CounterTotals,
    ShardedAsyncTaskStore,
    ShardedTaskStore,
    decode_cursor,
    home_shard,
    new_task_id,
    open_async_store,
    open_store,
    shard_of,
)
from core.states import State
from core.store import AsyncTaskStore, TaskStore, new_token
from core.task import Task
from tests.conftest import cluster_client
from tests.core.conftest import BACKENDS
from tests.core.helpers import assert_one_place

SHARDS = 3
# What a sharded store may leave to its control shard (shard 0): process-wide state, not tasks.
CONTROL_ONLY = {
    "beat_worker", "worker_beat", "beat_scheduler", "leave", "dead_consumers", "take_token",
    "adapt_rate", "paced_rate", "note_rejection", "end_rejection_run", "recover_orphans",
    "live_consumers", "consumer_alive", "scheduler_info", "server_info", "shard_for", "new_task_id",
    "event_channels", "provider", "uptime_seconds", "now_ms", "pubsub",
}  # fmt: skip


def test_each_shard_tag_hashes_into_its_own_third_of_the_slots() -> None:
    tags = shard_tags(SHARDS, cluster=True)
    assert tags == shard_tags(SHARDS, cluster=False), "the same names with or without a cluster"
    thirds = [key_slot(tag.encode()) * SHARDS // 16384 for tag in tags]
    assert thirds == [0, 1, 2]
    assert shard_tags(1, cluster=False) == [""] and shard_tags(1, cluster=True) == ["atf"]


def test_a_task_id_names_its_shard_and_stays_a_uuid() -> None:
    for shard in range(SHARDS):
        task_id = new_task_id(shard, SHARDS)
        assert str(uuid.UUID(task_id)) == task_id and shard_of(task_id, SHARDS) == shard
    assert shard_of(str(uuid.uuid4()), 1) == 0
    assert shard_of("0" * 30 + "ff", SHARDS) == 0, "an id of no shard (made before shards) is shard 0's"
    assert {home_shard(f"consumer-{n}", SHARDS) for n in range(30)} == {0, 1, 2}


def test_the_sharded_stores_leave_only_process_state_to_the_control_shard() -> None:
    """Every public method of the one-shard stores is re-routed by the sharded ones, or is
    process-wide state that lives on the control shard: a new method cannot silently read one shard."""
    for one, sharded in ((TaskStore, ShardedTaskStore), (AsyncTaskStore, ShardedAsyncTaskStore)):
        public = {name for name, _ in inspect.getmembers(one) if not name.startswith("_")}
        rerouted = {name for name in vars(sharded) if not name.startswith("_")}
        assert public - rerouted - CONTROL_ONLY == set(), one.__name__


def test_open_store_is_the_plain_store_with_one_shard() -> None:
    one = Settings(_env_file=None)
    assert type(open_store(one, fakeredis.FakeRedis())) is TaskStore
    assert type(open_async_store(one, fakeredis.FakeAsyncRedis())) is AsyncTaskStore
    three = Settings(_env_file=None, redis_shards=SHARDS)
    assert isinstance(open_store(three, fakeredis.FakeRedis()), ShardedTaskStore)


# --- the same tasks on 3 shards and on 1 -------------------------------------------------------
class Deployment:
    """A sync and an asyncio store over `count` shards of one backend, under one test prefix."""

    def __init__(self, sync_client: Any, async_client: Any, prefix: str, count: int, cluster: bool) -> None:
        keys = [Keys(prefix, tag) for tag in shard_tags(count, cluster)]
        if count == 1:
            self.sync: TaskStore = TaskStore(sync_client, keys[0])
            self.aio: AsyncTaskStore = AsyncTaskStore(async_client, keys[0])
        else:
            self.sync, self.aio = ShardedTaskStore(sync_client, keys), ShardedAsyncTaskStore(async_client, keys)


@pytest.fixture(params=BACKENDS)
def deployments(request: pytest.FixtureRequest, redis_url: str) -> Iterator[tuple[Deployment, Deployment, Any]]:
    """(3 shards, 1 shard, the event loop) on one backend, under two prefixes."""
    loop = asyncio.new_event_loop()
    cluster = request.param == "cluster"
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        sync_client: Any = fakeredis.FakeRedis(server=server, decode_responses=True)
        async_client: Any = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    elif cluster:
        ports = request.getfixturevalue("redis_cluster")
        sync_client = cluster_client(ports)
        async_client = AsyncCluster(startup_nodes=[AsyncClusterNode("127.0.0.1", ports[0])], decode_responses=True)
    else:
        sync_client = redis.Redis.from_url(redis_url, decode_responses=True)
        async_client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    sync_client.flushdb()
    prefix = f"s{uuid.uuid4().hex[:6]}:"
    yield (
        Deployment(sync_client, async_client, prefix + "three:", SHARDS, cluster),
        Deployment(sync_client, async_client, prefix + "one:", 1, cluster),
        loop,
    )
    loop.run_until_complete(async_client.aclose())
    loop.close()
    sync_client.close()


def _submit(deployment: Deployment, loop: Any, n: int, key: str = "", owner: str = "alice") -> list[str]:
    """One submit of `n` tasks, as the API makes it: one shard for the submit, ids naming it."""
    shard = deployment.aio.shard_for(key)
    tasks = [Task(id=deployment.aio.new_task_id(shard), task_type="summarize", content=f"text {i}", max_retries=3,
                  owner=owner) for i in range(n)]  # fmt: skip
    return list(loop.run_until_complete(deployment.aio.create_many(tasks, key, 60_000)).ids)


def _run(deployment: Deployment, loop: Any, ids: list[str], consumer: str) -> None:
    """Claim everything (from any shard), complete the even tasks, fail the odd ones to the DLQ."""
    claimed = []
    while (claim := deployment.sync.claim(consumer, token := new_token(), False)).status == "ok":
        claimed.append(claim.task_id)
        if ids.index(claim.task_id) % 2 == 0:
            deployment.sync.complete(claim.task_id, consumer, token, "done", "openrouter")
        else:
            deployment.sync.fail(claim.task_id, consumer, token, State.DLQ, "broken", "transient")
    assert sorted(claimed) == sorted(ids), "every task claimed once, whatever its shard"


def _listing(aio: AsyncTaskStore, loop: Any, limit: int, state: State | None = None, **filters: Any) -> list[str]:
    ids, cursor = [], None
    while True:
        page = loop.run_until_complete(aio.page(state, limit, cursor, **filters))
        ids += page.ids
        if page.cursor is None:
            return ids
        cursor = page.cursor


def test_the_same_tasks_on_three_shards_and_on_one_read_the_same(deployments: tuple[Any, Any, Any]) -> None:
    three, one, loop = deployments
    for deployment in (three, one):
        ids = [i for n in range(20) for i in _submit(deployment, loop, 3, owner="alice" if n % 2 else "bob")]
        _run(deployment, loop, ids, "c1")
    spread = [i for n in range(SHARDS) for i in _submit(three, loop, 1, key=f"k{n}")]
    assert len(spread) == SHARDS

    run = loop.run_until_complete
    for name in ("counters", "state_counts", "depths", "type_counters", "durations_count"):
        reads = [run(_figure(d.aio, name)) for d in (three, one)]
        assert reads[0] == _plus_spread(reads[1], name), name
    assert run(three.aio.throughput())["last_minute"] == run(one.aio.throughput())["last_minute"]
    assert sum(b[1] for b in run(three.aio.throughput_history())[1]) == 30
    assert run(three.aio.consumer_stats(["c1"]))["c1"]["processed"] == 60
    for shard in three.sync.shards:  # type: ignore[attr-defined]
        shard.r.expire(shard.keys.consumer_stats("c1"), 5)
    three.sync.beat("c1", {}, 10)
    for shard in three.sync.shards:  # type: ignore[attr-defined]
        assert shard.r.ttl(shard.keys.consumer_stats("c1")) > 3600, "the heartbeat keeps every shard's counts"
    assert run(three.aio.usage("alice")).backlog == SHARDS and run(one.aio.usage("alice")).backlog == 0

    # Listings merged by score page through every shard's tasks once, newest first.
    for filters in ({"state": State.COMPLETED}, {"state": State.DLQ, "task_type": "summarize"}, {"owner": "bob"}):
        for limit in (1, 7, 100):
            listed = _listing(three.aio, loop, limit, **filters)
            assert len(listed) == len(set(listed)) == len(_listing(one.aio, loop, 100, **filters)), (filters, limit)
    everything = _listing(three.aio, loop, 7, state=None)
    assert set(everything) == set(run(three.aio.get_many(everything[::-1]))[i].id for i in range(63))
    created = [run(three.aio.get(i)).created_at for i in everything]
    assert created == sorted(created, reverse=True)
    assert decode_cursor("~not-base64!", SHARDS) is None and decode_cursor("1:x", SHARDS) is None

    # Each task's calls go to its own shard, and its invariants hold there.
    for task_id in spread:
        shard = three.sync.shards[shard_of(task_id, SHARDS)]  # type: ignore[attr-defined]
        assert assert_one_place(shard, task_id).state is State.PENDING
        assert run(three.aio.cancel(task_id)) is State.PENDING
    requeued, skipped = run(three.aio.requeue_dead([], 100))
    assert (requeued, skipped) == (30, [])
    assert run(three.aio.depths())["retry"] == 30


async def _figure(aio: AsyncTaskStore, name: str) -> Any:
    if name == "durations_count":
        return (await aio.durations()).count
    figure = await getattr(aio, name)()
    return figure


def _plus_spread(figure: Any, name: str) -> Any:
    """The one-shard figure plus the three single submits made on the sharded deployment only."""
    if name == "counters":
        return {**figure, "submitted": figure["submitted"] + SHARDS}
    if name == "state_counts":
        return {**figure, "PENDING": figure["PENDING"] + SHARDS}
    if name == "depths":
        return {**figure, "primary": figure["primary"] + SHARDS}
    if name == "type_counters":
        return {"summarize": {**figure["summarize"], "submitted": figure["summarize"]["submitted"] + SHARDS}}
    return figure


def test_an_idle_consumer_wakes_for_work_on_any_shard_and_claims_it(deployments: tuple[Any, Any, Any]) -> None:
    three, _, loop = deployments
    if isinstance(three.sync.r, fakeredis.FakeRedis):
        pytest.skip("blocking pops: a real server only")
    consumer = "idle-consumer"
    home = home_shard(consumer, SHARDS)
    assert three.sync.wait_for_work(0.2, consumer) is False, "nothing anywhere: it times out"
    elsewhere = next(f"k{n}" for n in range(100) if three.aio.shard_for(f"k{n}") != home)
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(three.sync.wait_for_work(60, consumer)))
    waiter.start()
    time.sleep(0.3)
    [task_id] = _submit(three, loop, 1, key=elsewhere)
    waiter.join(30)
    assert woken == [True], "a mark on another shard than its home wakes it"
    claim = three.sync.claim(consumer, new_token(), False)
    assert (claim.status, claim.task_id) == ("ok", task_id)
    assert three.sync.claim(consumer, new_token(), False).status == "empty"


def test_the_live_streams_counters_are_the_fleets_not_one_shards() -> None:
    """An event carries its own shard's new counter values; the stream shows their sum over the
    shards, from each shard's figures when it started and every later event's (absolute, so an
    event already in the starting figures is not counted twice)."""
    totals = CounterTotals({"s0": {"completed": 10, "started": 12}, "s1": {"completed": 4}, "s2": {}})
    assert totals.total("s1", {"completed": 5}) == {"completed": 15}
    assert totals.total("s2", {"completed": 1, "started": 1}) == {"completed": 16, "started": 13}
    assert totals.total("s1", {"completed": 5}) == {"completed": 16}, "the same value again adds nothing"


def test_a_consumers_tasks_in_flight_read_in_claim_order_across_shards(deployments: tuple[Any, Any, Any]) -> None:
    """The consumer takes its worker's oldest CELERY_WORKER_CONCURRENCY tasks in flight for the
    ones that started (worker_lost): a shard-by-shard order would hand back a running task unspent."""
    three, _, loop = deployments
    consumer = "flight-consumer"
    shards = three.sync.shards  # type: ignore[attr-defined]
    by_shard = {n: _submit(three, loop, 2, key=next(f"k{i}" for i in range(100) if three.aio.shard_for(f"k{i}") == n))
                for n in range(SHARDS)}  # fmt: skip
    claimed = []
    for n in (2, 0, 1, 2, 1, 0):  # interleaved: no shard's list is a prefix of the claim order
        time.sleep(0.003)  # claims a few ms apart (a claim's stamp is in ms)
        claim = shards[n].claim(consumer, new_token(), False)
        assert claim.status == "ok" and claim.task_id in by_shard[n]
        claimed.append(claim.task_id)
    assert three.sync.inflight_ids(consumer) == claimed
    assert three.sync.inflight_claimed_at(consumer) == [(three.sync.get(i).started_at, i) for i in claimed]
