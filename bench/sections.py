"""One run of each measured configuration; each returns a flat dict of figures (NaN = not
measured). run.py repeats them, interleaved, and stats.py turns the runs into tables."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import random
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import load
from bench.procs import ROOT, Meter, cpu_delta, wait_for
from bench.stack import Baseline, Env, Product, System
from bench.stats import crossing, percentile, steady_throughput

Figures = dict[str, float]
TOKEN = re.compile(r"Benchmark text ([0-9a-f]{32})")


class Poller:
    """Samples the done count every 10 ms in a thread (the timeline) and takes the CPU of every
    role when 10 % and 90 % of the tasks are done, so CPU is measured over the same window as the
    steady-state throughput."""

    def __init__(self, system: System, meter: Meter, base: int, total: int) -> None:
        self.system, self.meter, self.base, self.total = system, meter, base, total
        self.timeline: list[tuple[float, int]] = []
        self.cpu_marks: dict[float, dict[str, float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop = threading.Event()

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            done = self.system.done() - self.base
            self.timeline.append((time.perf_counter(), done))
            for mark in (0.1, 0.9):
                if mark not in self.cpu_marks and done >= mark * self.total:
                    self.cpu_marks[mark] = self.meter.cpu()
            if done >= self.total:
                return
            time.sleep(0.01)

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        self._stop.set()
        return bool(self.timeline) and self.timeline[-1][1] >= self.total

    def window_cpu_ms(self) -> dict[str, float]:
        """CPU ms per task of each role between the 10 % and 90 % marks."""
        if 0.1 not in self.cpu_marks or 0.9 not in self.cpu_marks:
            return {}
        start, end = crossing(self.timeline, 0.1 * self.total), crossing(self.timeline, 0.9 * self.total)
        tasks = (end[1] - start[1]) if start and end else 0
        delta = cpu_delta(self.cpu_marks[0.1], self.cpu_marks[0.9])
        return {role: seconds * 1000 / tasks for role, seconds in delta.items()} if tasks else {}


def commandstats(env: Env) -> dict[str, int]:
    """Redis' per-command call counts (commands run inside Lua scripts included)."""
    stats: dict[str, Any] = env.r.info("commandstats")  # type: ignore[assignment]
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def commands_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}


def _mb(value: int | None) -> float:
    return value / 2**20 if value else math.nan


def warm(system: System, count: int = 3, workers: bool = True) -> None:
    """A few tasks through the whole path (only into the queue without `workers`), so start-up
    costs stay out of the measurement."""
    with httpx.Client(base_url=system.base_url, timeout=30) as client:
        for _ in range(count):
            client.post(load.SUBMIT, json={"content": load.content()}).raise_for_status()
    if workers:
        wait_for(lambda: system.done() >= count, 60, f"{system.name} warm-up tasks", 0.02)


# --- 1. I/O-bound: queue filled through the API, then one worker container drains it ----------
def io_run(env: Env, kind: str, concurrency: int, count: int, events: bool = False) -> Figures:
    """kind: `atf` (our API and one worker container) or `fastapi` (FastAPI → `.delay()` and a bare
    Celery threads worker at the same concurrency, the same run's baseline)."""
    env.reset()
    make = Product if kind == "atf" else Baseline
    system: System = make(env, 0.2, concurrency, events)
    try:
        system.start_api()
        api_meter = Meter({"api": system.procs["api"].pid})
        before = api_meter.cpu()
        seconds, refused = asyncio.run(load.submit_many(system.base_url, count))
        api_ms = (api_meter.cpu()["api"] - before["api"]) * 1000 / count
        cmds0 = commandstats(env)
        spawned = time.perf_counter()
        system.start_workers()
        meter = Meter(system.roles(), system.alone)
        meter.start_sampling()
        poller = Poller(system, meter, 0, count).start()
        complete = poller.wait(count / (concurrency / 0.2) * 4 + 60)
        peaks = meter.stop_sampling()
        cmds = sum(commands_delta(cmds0, commandstats(env)).values())
        figures = _drain_figures(poller, spawned, count)
        cpu = poller.window_cpu_ms()
        figures.update(
            {
                "limit": concurrency / 0.2,
                "submit_per_s": count / seconds,
                "refused": float(refused),
                "api_cpu_ms": api_ms,
                "consumer_cpu_ms": cpu.get("consumer", math.nan),
                "worker_cpu_ms": cpu.get("worker", math.nan),
                "redis_cpu_ms": cpu.get("redis", math.nan),
                "stub_cpu_ms": cpu.get("stub", math.nan),
                "container_rss_mb": _mb(peaks.get("container", peaks.get("worker"))),
                "worker_rss_mb": _mb(peaks.get("worker")),
                "consumer_rss_mb": _mb(peaks.get("consumer")),
                "redis_cmds": cmds / count,
                "failed": float(system.failed()),
                "incomplete": 0.0 if complete else 1.0,
            }
        )
        return figures
    finally:
        system.stop()


def _drain_figures(poller: Poller, started: float, count: int) -> Figures:
    first = crossing(poller.timeline, 1)
    return {
        "throughput": steady_throughput(poller.timeline, count),
        "first_done_s": first[0] - started if first else math.nan,
    }


# --- 2. No-op overhead, end to end, while the workers run ---------------------------------------
def noop_run(env: Env, kind: str, count: int, events: bool = False, root: Path = ROOT) -> Figures:
    """kind: `atf` (our API), `fastapi` (FastAPI → .delay()), `bare` (.delay() from a script);
    `root`: the source tree the product runs from (another checkout: an older version of it)."""
    env.reset()
    system: System = Product(env, 0.0, 64, events, root) if kind == "atf" else Baseline(env, 0.0, 64, events)
    try:
        system.start_api()
        system.start_workers()
        system.wait_ready()
        warm(system)
        meter = Meter(system.roles(), system.alone)
        meter.start_sampling()
        before, cmds0 = meter.cpu(), commandstats(env)
        poller = Poller(system, meter, system.done(), count)
        started = time.perf_counter()
        poller.start()
        submit_s, client_cpu = _submit_all(system, kind, count)
        complete = poller.wait(count / 50 + 60)
        ended = poller.timeline[-1][0] if poller.timeline else math.nan
        after, peaks = meter.cpu(), meter.stop_sampling()
        delta = cpu_delta(before, after)
        cmds = commands_delta(cmds0, commandstats(env))
        figures = {f"{role}_cpu_ms": s * 1000 / count for role, s in delta.items()}
        figures.update(
            {
                "throughput": steady_throughput(poller.timeline, count),
                "end_to_end": count / (ended - started),
                "submit_per_s": count / submit_s,
                "client_cpu_ms": client_cpu * 1000 / count,
                "redis_cmds": sum(cmds.values()) / count,
                "evalsha": (cmds.get("evalsha", 0) + cmds.get("eval", 0)) / count,
                "worker_rss_mb": _mb(peaks.get("worker")),
                "container_rss_mb": _mb(peaks.get("container")),
                "failed": float(system.failed()),
                "incomplete": 0.0 if complete else 1.0,
            }
        )
        figures["cmds_json"] = json.dumps({k: v / count for k, v in cmds.items()})  # type: ignore[assignment]
        return figures
    finally:
        system.stop()


def _submit_all(system: System, kind: str, count: int) -> tuple[float, float]:
    """(seconds to submit, client CPU seconds): the harness's httpx pool, or the bare script."""
    if kind != "bare":
        cpu = time.process_time()
        seconds, refused = asyncio.run(load.submit_many(system.base_url, count))
        if refused:
            raise RuntimeError(f"{refused} submissions refused")
        return seconds, time.process_time() - cpu
    out = _script(system, ["drain", str(count)])
    return float(out["seconds"]), float(out["cpu"])


def _script(system: System, args: list[str]) -> dict[str, Any]:
    """Run bench/bare_delay.py with the system's environment; its JSON answer plus its CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **system.vars}
    done = subprocess.run([sys.executable, "-m", "bench.bare_delay", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    out["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


# --- 3. Submit latency at a fixed offered rate, workers running the real workload -------------
def submit_run(env: Env, kind: str, rate: float, seconds: float, workers: bool = True) -> Figures:
    """Without `workers` the API alone takes the load: on a machine whose cores the workers fill,
    that row tells the API's own latency from the wait for a core."""
    env.reset()
    system: System = Product(env, 0.2, 64) if kind == "atf" else Baseline(env, 0.2, 64)
    try:
        system.start_api()
        if workers:
            system.start_workers()
            system.wait_ready()
        warm(system, 3 if workers else 50, workers)
        result = asyncio.run(load.offered_rate(system.base_url, rate, seconds))
        lat = result.latencies_ms
        return {
            "rate": rate,
            "achieved": result.sent / result.seconds,
            "p50": percentile(lat, 50),
            "p90": percentile(lat, 90),
            "p99": percentile(lat, 99),
            "max": max(lat) if lat else math.nan,
            "errors": float(result.errors),
            "late_p99": percentile(result.late_ms, 99),
            "no_answer": float(result.statuses.get(0, 0)),
            "statuses_json": json.dumps(result.statuses),  # type: ignore[dict-item]
        }
    finally:
        system.stop()


# --- 4. Pick-up latency on an idle system ------------------------------------------------------
def pickup_run(env: Env, kind: str, count: int) -> Figures:
    env.reset()
    system: System = Product(env, 0.0, 64) if kind == "atf" else Baseline(env, 0.0, 64)
    try:
        system.start_api()
        system.start_workers()
        system.wait_ready()
        warm(system)
        sent = _script(system, ["pickup", str(count)])["sent"] if kind == "bare" else _pickups(system, count)
        arrived = {m.group(1): call["at"] for call in env.stub_calls(0.0) if (m := TOKEN.search(call["content"]))}
        waits = [(arrived[t] - at) * 1000 for t, at in sent.items() if t in arrived]
        return {
            "p50": percentile(waits, 50),
            "p90": percentile(waits, 90),
            "p99": percentile(waits, 99),
            "max": max(waits) if waits else math.nan,
            "missing": float(len(sent) - len(waits)),
        }
    finally:
        system.stop()


def _pickups(system: System, count: int) -> dict[str, float]:
    async def go() -> dict[str, float]:
        sent: dict[str, float] = {}
        conn = await load.Connection.open(system.base_url)
        for _ in range(count):
            await asyncio.sleep(random.uniform(0.02, 0.1))
            base, text = system.done(), load.content()
            match = TOKEN.search(text)
            assert match is not None
            sent[match.group(1)] = await load.one_submit(conn, text)
            await _until(functools.partial(_beyond, system, base), 10)
        await conn.close()
        return sent

    return asyncio.run(go())


def _beyond(system: System, base: int) -> bool:
    return system.done() > base


async def _until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
