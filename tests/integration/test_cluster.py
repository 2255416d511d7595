"""Cluster mode on real processes (issue 19): api, consumers, Celery workers and scheduler on a
real 3-master Redis Cluster (REDIS_CLUSTER_NODES), Celery's broker in a plain Redis by URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import httpx
import pytest
import redis

from core.states import State
from tests.integration.stack import Stack, wait_until
from tests.integration.test_crash_safety import active_count, lost_once
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration


def _slots(stack: Stack, names: list[str]) -> set[int]:
    return {int(stack.redis.execute_command("CLUSTER KEYSLOT", name)) for name in names}


def test_the_pipeline_runs_on_a_redis_cluster(
    make_cluster_stack: Callable[..., Stack], redis_cluster: list[int]
) -> None:
    stack = make_cluster_stack(redis_cluster).start_all()
    events: list[dict] = []
    listening = threading.Event()
    threading.Thread(target=_listen, args=(stack, events, listening), daemon=True).start()
    assert listening.wait(60), "the live stream answered"
    ids = [stack.submit(f"[[tag:c{i}]] Cluster document {i}. It says something.") for i in range(200)]

    assert set(stack.wait_terminal(ids, timeout=120).values()) == {State.COMPLETED}
    assert [stack.task(task_id)["result"] for task_id in ids] == [f"summary:c{i}" for i in range(200)]
    started = [stack.store.get(task_id).started_at for task_id in ids]
    assert started == sorted(started), "FIFO holds on the cluster"
    stack.assert_nothing_left()
    # Every key of the deployment shares one slot (one hash tag), whatever the key's kind.
    names = list(stack.redis.scan_iter(match=f"{stack.prefix}*", count=1000))
    assert len(names) > 200 and len(_slots(stack, names)) == 1
    # The operations API reads the cluster: statistics, listings, the live stream.
    stats = stack.http.get("/api/v1/tasks/statistics/overview").json()
    assert (stats["totals"]["completed"], stats["states"]["COMPLETED"]) == (200, 200), stats
    assert stats["throughput_last_minute"]["completed"] == 200, stats
    page = stack.http.get("/api/v1/tasks", params={"state": "COMPLETED", "limit": 50}).json()
    assert len(page["items"]) == 50 and {t["task_id"] for t in page["items"]} <= set(ids)
    assert page["next_cursor"]
    assert stack.http.get("/health").json()["status"] == "ok"
    wait_until(lambda: any(e.get("to") == "COMPLETED" for e in events), 30, what="a live COMPLETED event")


def _listen(stack: Stack, events: list[dict], listening: threading.Event) -> None:
    url = f"http://127.0.0.1:{stack.api_port}/api/v1/queues/status/stream"
    try:
        with httpx.Client(timeout=None) as http, http.stream("GET", url) as response:
            for line in response.iter_lines():
                listening.set()
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
    except httpx.HTTPError:
        pass  # the stack stopped


def test_a_consumer_killed_on_a_cluster_loses_nothing(
    make_cluster_stack: Callable[..., Stack], redis_cluster: list[int], stub: StubLLM
) -> None:
    stack = make_cluster_stack(redis_cluster, CELERY_WORKER_CONCURRENCY="4", WORKER_PREFETCH="0").start_all()
    ids = [stack.submit(f"[[delay:4]] [[tag:k{i}]] slow cluster document {i}") for i in range(8)]
    wait_until(lambda: active_count(stack) == 4, 20, what="four tasks in flight")

    stack.kill("consumer-a")  # SIGKILL: no drain, no goodbye
    stack.start("consumer", "a")

    assert set(stack.wait_terminal(ids, timeout=90).values()) == {State.COMPLETED}
    assert len([t for t in map(stack.task, ids) if lost_once(t)]) == 4, "the dead consumer's four, recovered"
    stack.assert_nothing_left()


def _tasks_per_master(stack: Stack, ports: list[int]) -> list[int]:
    """How many of the deployment's task hashes each master holds."""
    counts = []
    for port in ports:
        node = redis.Redis(port=port, decode_responses=True)
        if node.execute_command("ROLE")[0] == "master":
            found = node.scan_iter(match=f"{stack.prefix}*task:*", count=1000)
            counts.append(sum(1 for name in found if name.count(":") == 1 + stack.prefix.count(":")))
    return counts


def test_three_shards_spread_over_the_masters_and_lose_nothing(
    make_cluster_stack: Callable[..., Stack], redis_cluster: list[int], stub: StubLLM
) -> None:
    """REDIS_SHARDS=3 on 3 masters: 600 tasks (some retried once) all complete while a consumer is
    killed mid-run; every master holds a share; the API's figures and listings cover every shard."""
    stack = make_cluster_stack(redis_cluster, REDIS_SHARDS="3").start_all(pairs=("a", "b"))
    ids = [stack.submit(f"[[tag:s{i}]] {'[[fail:1]] ' if i % 10 == 0 else ''}Sharded {i}.") for i in range(600)]
    wait_until(lambda: stack.http.get("/api/v1/tasks/statistics/overview").json()["totals"].get("completed", 0) > 100,
               120, what="a sixth of the tasks done")  # fmt: skip
    stack.kill("consumer-a")  # SIGKILL mid-run
    stack.start("consumer", "a")

    assert set(stack.wait_terminal(ids, timeout=240).values()) == {State.COMPLETED}
    assert [stack.task(task_id)["result"] for task_id in ids] == [f"summary:s{i}" for i in range(600)]
    per_master = _tasks_per_master(stack, redis_cluster)
    assert len(per_master) == 3 and sum(per_master) == 600 and min(per_master) >= 100, per_master
    stats = stack.http.get("/api/v1/tasks/statistics/overview").json()
    assert (stats["totals"]["completed"], stats["states"]["COMPLETED"], stats["totals"]["retried"]) == (600, 600, 60)
    listed, cursor = [], None
    while True:
        page = stack.http.get("/api/v1/tasks", params={"state": "COMPLETED", "limit": 97, "cursor": cursor}).json()
        listed += [t["task_id"] for t in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(listed) == sorted(ids), "the merged listing pages through every shard's tasks once"
    stack.assert_nothing_left()
