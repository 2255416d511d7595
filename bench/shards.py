"""Issue 19's `shards` section of `make bench`: the 200 ms I/O workload on a real 3-master Redis
Cluster (redis-server --cluster-enabled yes, on this machine) with REDIS_SHARDS=1 and with 3.

Each run: the cluster emptied, the API and the scheduler started, COUNT tasks submitted, then one
worker container (concurrency 64) drains them. Measured over the drain: tasks per second (10 %→90 %
of the tasks done), and each master's redis-server CPU per task (its main thread, from
/proc/<pid>/schedstat: commands, Lua, reading requests, writing replies). Runs alternate 1 shard,
3 shards, 1, 3, … so the machine's drifts reach both alike.

The capacity model (docs/DEPLOYMENT.md): a shard carries at most 1 s ÷ (its master's CPU µs per
task); N shards on N masters with a core each carry N times that. Its prediction is printed beside
the measured figures. This machine has 2 cores for everything (3 masters, API, consumer, Celery
worker, stand-in), so the I/O workload is bound by the worker's slots (64 ÷ 0.2 s = 320 tasks/s),
not by Redis: what 3 shards may cost is the sharded reads and claims, at most 10 % of 1 shard's
throughput (the issue's target), and what they give is each master's CPU per task falling to 1/N.

    .venv/bin/python -m bench.shards [--quick] [--reps R]  # the same as python -m bench.run --only shards
"""

from __future__ import annotations

import asyncio
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from bench import load
from bench.procs import spawn, stop, tree, wait_for
from bench.redis_cost import main_thread_ns
from bench.stack import PREFIX, WORKER_ID, Env, answers
from bench.stats import cell, number, spread, steady_throughput, table
from core.keys import Keys, shard_tags
from core.states import State
from utils import redis_server

SHARD_COUNTS = (1, 3)
CONCURRENCY = 64
DELAY = 0.2
TARGET = 0.90  # 3 shards keep at least 90 % of 1 shard's throughput
Figures = dict[str, float]


class Cluster:
    """The private 3-master cluster (no replicas) for the whole section."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = redis_server.start_cluster(workdir / "cluster", masters=3)
        self.ports = [port for _, port in self.nodes]
        self.client = RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=True)
        self.cpu = {port: main_thread_ns(proc.pid) for proc, port in self.nodes}

    def empty(self) -> None:
        for port in self.ports:
            redis.Redis(port=port).flushall()

    def cpu_ns(self) -> dict[int, int]:
        return {port: read() if read else 0 for port, read in self.cpu.items()}

    def close(self) -> None:
        self.client.close()
        redis_server.stop(self.nodes)


def one_run(env: Env, cluster: Cluster, shards: int, count: int) -> Figures:
    cluster.empty()
    env.reset()
    keys = [Keys(PREFIX, tag) for tag in shard_tags(shards, cluster=True)]
    api_port = redis_server.free_port()
    variables = {
        "REDIS_CLUSTER_NODES": ",".join(f"127.0.0.1:{port}" for port in cluster.ports),
        "REDIS_URL": f"redis://127.0.0.1:{cluster.ports[0]}/0",
        "CELERY_BROKER_URL": env.redis_url.rsplit("/", 1)[0] + "/1",
        "REDIS_SHARDS": str(shards),
        "REDIS_KEY_PREFIX": PREFIX,
        "OPENROUTER_API_KEY": "bench-key",
        "OPENROUTER_BASE_URL": env.stub_url(DELAY),
        "API_PORT": str(api_port),
        "WORKER_ID": WORKER_ID,
        "CELERY_WORKER_CONCURRENCY": str(CONCURRENCY),
    }
    procs = {}

    def start(role: str, argv: list[str]) -> None:
        procs[role] = spawn(argv, variables, env.workdir / f"shards{shards}-{role}.log")

    try:
        start("api", ["python", "-m", "api"])
        start("scheduler", ["python", "-m", "consumer.scheduler"])
        wait_for(functools.partial(answers, f"http://127.0.0.1:{api_port}/health"), 60, "the API", 0.1)
        _, refused = asyncio.run(load.submit_many(f"http://127.0.0.1:{api_port}", count))
        start("container", ["python", "-m", "worker.container"])
        wait_for(lambda: len(tree(procs["container"].pid)) == 2, 60, "the container's Celery worker")
        cpu0, timeline = cluster.cpu_ns(), []
        started = time.perf_counter()
        deadline = started + count / (CONCURRENCY / DELAY) * 4 + 120
        while (done := _done(cluster.client, keys)) < count and time.perf_counter() < deadline:
            timeline.append((time.perf_counter(), done))
            time.sleep(0.05)
        timeline.append((time.perf_counter(), done))
        cpu1 = cluster.cpu_ns()
    finally:
        stop(list(reversed(procs.values())), timeout=30)
    per_master = sorted(((cpu1[p] - cpu0[p]) / 1000 / count for p in cluster.ports), reverse=True)
    figures: Figures = {"throughput": steady_throughput(timeline, count), "refused": float(refused)}
    figures.update({f"redis_us_master{n}": us for n, us in enumerate(per_master)})
    figures["redis_us_total"] = sum(per_master)
    figures["incomplete"] = 0.0 if done >= count else 1.0
    return figures


def _done(client: Any, keys: list[Keys]) -> int:
    return sum(int(client.zcard(k.state_index(State.COMPLETED))) for k in keys)


def section(env: Env, count: int, reps: int, log: Callable[[str], None]) -> tuple[str, dict[str, object]]:
    """The whole section: its Markdown and every run's figures."""
    cluster = Cluster(env.workdir)
    runs: dict[int, list[Figures]] = {n: [] for n in SHARD_COUNTS}
    try:
        for rep in range(reps):
            for shards in SHARD_COUNTS:
                started = time.monotonic()
                runs[shards].append(one_run(env, cluster, shards, count))
                log(f"  shards={shards} run {rep + 1}/{reps}: {time.monotonic() - started:.0f}s")
    finally:
        cluster.close()
    return "## 9. Shards on a 3-master Redis Cluster (issue 19)\n\n" + shards_table(runs, count), {"runs": runs}


def _med(runs: Sequence[Figures], key: str) -> float:
    return spread([r[key] for r in runs])[0]


def shards_table(runs: dict[int, list[Figures]], count: int) -> str:
    one = _med(runs[1], "throughput")
    busiest_one = _med(runs[1], "redis_us_master0")
    per_shard = 1e6 / busiest_one if busiest_one else math.nan  # the model's capacity of one shard
    head = ["REDIS_SHARDS", "tasks/s", "vs 1 shard", "Redis CPU µs/task, each master (busiest first)",
            "all masters", "model: Redis-bound ceiling", "slot-bound ceiling"]  # fmt: skip
    rows = []
    for shards, figures in runs.items():
        masters = " / ".join(number(_med(figures, f"redis_us_master{n}")) for n in range(3))
        ratio = _med(figures, "throughput") / one if one else math.nan
        rows.append([str(shards), cell([f["throughput"] for f in figures]), f"{ratio:.2f}×", masters,
                     number(_med(figures, "redis_us_total")), f"{number(shards * per_shard)} tasks/s",
                     f"{number(CONCURRENCY / DELAY)} tasks/s"])  # fmt: skip
    three = _med(runs[3], "throughput") / one if one else math.nan
    share = _med(runs[3], "redis_us_master0") / busiest_one if busiest_one else math.nan
    verdicts = table(
        ["target", "measured", "verdict"],
        [
            ["3 shards keep ≥ 90 % of 1 shard's throughput", f"{three:.2f}×", "pass" if three >= TARGET else "fail"],
            ["busiest master's Redis CPU per task falls to about 1/3", f"{share:.2f}× of 1 shard's", _third(share)],
        ],
    )
    incomplete = sum(int(f["incomplete"]) for figures in runs.values() for f in figures)
    note = (
        f"\n{count:,} tasks per run, submitted before one worker container (concurrency {CONCURRENCY}) drains them "
        f"from a stand-in answering in {DELAY * 1000:.0f} ms; tasks/s between 10 % and 90 % done (median and range "
        "of the runs). Redis CPU: each master's redis-server main thread over the drain (/proc/<pid>/schedstat), per "
        "task of the run, masters sorted busiest first. The model's ceiling: N × 1 s ÷ (the busiest master's µs "
        "per task with 1 shard), i.e. N masters each with a core of its own; the slot-bound ceiling is "
        "concurrency ÷ latency. Both masters and workers share this machine's 2 cores, so neither ceiling is "
        f"reached here: the drain is bound by the worker's CPU and slots. Runs not finished: {incomplete}.\n"
    )
    return table(head, rows) + "\n\n" + verdicts + "\n" + note


def _third(share: float) -> str:
    if math.isnan(share):
        return "n/a"
    return "pass" if share <= 0.5 else "fail"


def main(argv: list[str] | None = None) -> None:
    """Runs this section alone, through bench/run.py (its header, its results file)."""
    from bench import run  # here: bench.run imports this module

    run.main(["--only", "shards", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
