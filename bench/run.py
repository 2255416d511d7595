"""`make bench`: AsyncTaskFlow against the baselines of the same run, on this machine (issue 9).

Sections (`--only` picks some): io (I/O-bound drain at concurrency 16/64/256, and 64 without
task events), noop (no-op overhead end to end, vs FastAPI → .delay() and bare .delay()), submit
(POST latency at a fixed offered rate while workers run), pickup (idle submit → the stand-in
receives the call), scale (status/list/SSE with 0…1,000,000 finished tasks), rtt (Redis
commands per task by process), priorities (issue 18: the claim with 1 vs 1,000 owners holding
backlog; no-op throughput against the code before issue 18), redis_cost (issue 19: Redis µs and
commands per completed task from INFO commandstats, beside a reference script; about a minute),
shards (issue 19: the 200 ms I/O drain on a 3-master Redis Cluster with 1 shard and with 3).
Repetitions are interleaved: every configuration once, then again. Prints Markdown and writes it
to bench/results/<timestamp>.md.

    .venv/bin/python -m bench.run [--quick] [--only io,noop] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import priorities, redis_cost, report, scale, sections, shards, trace
from bench.report import IO_BASELINE
from bench.stack import Env

RESULTS = Path(__file__).resolve().parent / "results"
ALL = ("io", "noop", "submit", "pickup", "scale", "rtt", "priorities", "redis_cost", "shards")


@dataclass(frozen=True)
class Plan:
    reps: int
    io_tasks: int
    noop_tasks: int
    rate: float
    rate_seconds: float
    pickups: int
    sizes: list[int]
    scale_requests: int
    trace_tasks: int
    claim_backlog: int  # pending tasks each backlog shape holds (priorities)
    claims: int  # claims timed on each backlog shape per repetition (priorities)
    cost_tasks: int  # tasks through their whole life per repetition (redis_cost)


def plan(quick: bool, reps: int | None) -> Plan:
    if quick:
        return Plan(reps or 1, 600, 1000, 300, 5, 30, [0, 50, 20_000], 50, 100, 10_000, 1000, 1000)
    return Plan(reps or 3, 2000, 5000, 300, 20, 100, [0, 50, 100_000, 1_000_000], 200, 300, 20_000, 3000, 3000)


Runs = dict[str, list[dict[str, float]]]


def repeat(configs: dict[str, Callable[[], dict[str, float]]], reps: int) -> Runs:
    """Every configuration once per repetition, in order, so drifts of the machine spread evenly."""
    runs: Runs = {label: [] for label in configs}
    for rep in range(reps):
        for label, run in configs.items():
            started = time.monotonic()
            runs[label].append(run())
            log(f"  {label} run {rep + 1}/{reps}: {time.monotonic() - started:.0f}s")
    return runs


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def io_configs(env: Env, p: Plan) -> dict[str, Callable[[], dict[str, float]]]:
    configs: dict[str, Callable[[], dict[str, float]]] = {}
    for c in (16, 64, 256):
        configs[f"AsyncTaskFlow, concurrency {c}"] = lambda c=c: sections.io_run(env, "atf", c, p.io_tasks)  # type: ignore[misc]
    configs["AsyncTaskFlow, concurrency 64, CELERY_SEND_TASK_EVENTS=true"] = lambda: sections.io_run(
        env, "atf", 64, p.io_tasks, events=True
    )
    configs[IO_BASELINE] = lambda: sections.io_run(env, "fastapi", 64, p.io_tasks)
    return configs


def noop_configs(env: Env, p: Plan) -> dict[str, Callable[[], dict[str, float]]]:
    n = p.noop_tasks
    return {
        "AsyncTaskFlow API": lambda: sections.noop_run(env, "atf", n),
        "AsyncTaskFlow API, CELERY_SEND_TASK_EVENTS=true": lambda: sections.noop_run(env, "atf", n, events=True),
        "FastAPI → .delay() (baseline)": lambda: sections.noop_run(env, "fastapi", n),
        "bare Celery .delay() from a script (baseline)": lambda: sections.noop_run(env, "bare", n),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller counts")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(ALL)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    p = plan(args.quick, args.reps)
    given = sys.argv[1:] if argv is None else argv
    command = "make bench" if not given else "python -m bench.run " + " ".join(given)
    started, load_before = time.time(), os.getloadavg()
    env = Env()
    parts: list[str] = []
    raw: dict[str, object] = {}
    try:
        for section in only:
            log(f"section {section}")
            text, data = run_section(section, env, p)
            parts.append(text)
            raw[section] = data
    finally:  # a section that fails loses only itself: what finished before is written
        env.close()
        header = report.header(command, p.reps, started, load_before, os.getloadavg(), platform.python_version())
        if len(parts) < len(only):
            header += f"**Incomplete run**: section {only[len(parts)]} failed (see the error above).\n\n"
        write(header + "\n".join(parts), raw, started)


def run_section(section: str, env: Env, p: Plan) -> tuple[str, object]:
    if section == "io":
        runs = repeat(io_configs(env, p), p.reps)
        return report.io_table(runs, p.io_tasks), runs
    if section == "noop":
        runs = repeat(noop_configs(env, p), p.reps)
        return report.noop_table(runs, p.noop_tasks), runs
    if section == "submit":
        configs = {
            "AsyncTaskFlow API": lambda: sections.submit_run(env, "atf", p.rate, p.rate_seconds),
            "FastAPI → .delay() (baseline)": lambda: sections.submit_run(env, "fastapi", p.rate, p.rate_seconds),
            "AsyncTaskFlow API, no worker running": lambda: sections.submit_run(
                env, "atf", p.rate, p.rate_seconds, workers=False
            ),
            "FastAPI → .delay(), no worker running": lambda: sections.submit_run(
                env, "fastapi", p.rate, p.rate_seconds, workers=False
            ),
        }
        runs = repeat(configs, p.reps)
        return report.submit_table(runs, p.rate, p.rate_seconds), runs
    if section == "pickup":
        configs = {
            "AsyncTaskFlow API": lambda: sections.pickup_run(env, "atf", p.pickups),
            "FastAPI → .delay() (baseline)": lambda: sections.pickup_run(env, "fastapi", p.pickups),
            "bare Celery .delay() (baseline)": lambda: sections.pickup_run(env, "bare", p.pickups),
        }
        runs = repeat(configs, p.reps)
        return report.pickup_table(runs, p.pickups), runs
    if section == "priorities":
        return priorities.section(env, p.claim_backlog, p.claims, p.noop_tasks, p.reps, log)
    if section == "redis_cost":
        return redis_cost.section(env, p.cost_tasks, p.reps, log)
    if section == "shards":
        return shards.section(env, p.io_tasks, p.reps, log)
    if section == "scale":
        found = scale.scale_runs(env, p.sizes, max(3, p.reps), p.scale_requests)
        return report.scale_table(found, p.scale_requests), found
    traced = trace.trace_run(env, p.trace_tasks)
    return report.trace_table(traced, p.trace_tasks), traced


def write(text: str, raw: dict[str, object], started: float) -> None:
    sys.stdout.write(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    (RESULTS / f"{stamp}.md").write_text(text)
    (RESULTS / f"{stamp}.json").write_text(json.dumps(raw, indent=1, default=str))
    log(f"written: bench/results/{stamp}.md (and .json, every run's figures)")


if __name__ == "__main__":
    main()
