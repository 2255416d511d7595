"""The Markdown of `make bench`: one table per section, medians with [min–max] of the runs,
targets beside them, ratios against the baselines measured in the same run."""

from __future__ import annotations

import json
import math
import statistics
import time

from bench.stats import cell, number, ratio, spread, table

Runs = dict[str, list[dict[str, float]]]

# Section 1's baseline of the same run: the tutorial design's worker on the same workload.
IO_BASELINE = "FastAPI → .delay(), Celery threads, concurrency 64 (baseline)"
REFERENCE_IO = [  # /work/shared/peers-bench/RESULTS.md, same machine and stand-in, earlier run
    ("Celery prefork c=4 (reference)", "4", "20", "19.6", "270 (sum)"),
    ("Celery threads c=64 (reference)", "64", "320", "308", "77"),
    ("Dramatiq 2 procs × 32 threads (reference)", "64", "320", "314", "118"),
    ("SAQ concurrency 64 (reference)", "64", "320", "306", "41"),
]


def header(command: str, reps: int, started: float, load0: tuple[float, ...], load1: tuple[float, ...], py: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started))
    minutes = (time.time() - started) / 60
    return (
        f"# AsyncTaskFlow benchmark ({when})\n\n"
        f"Command: `{command}`; {reps} repetition(s), interleaved; {minutes:.1f} min; Python {py}.\n"
        f"Load average (1/5/15 min) at start {_load(load0)}, at end {_load(load1)} (2 shared cores: other "
        "work on the machine shows here).\nEach cell: median [min–max] of the runs.\n\n"
    )


def _load(values: tuple[float, ...]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def col(runs: list[dict[str, float]], key: str, digits: int | None = None) -> str:
    return cell([r.get(key, math.nan) for r in runs], digits)


def med(runs: list[dict[str, float]], key: str) -> float:
    return spread([r.get(key, math.nan) for r in runs])[0]


def io_table(runs: Runs, count: int) -> str:
    head = ["configuration", "concurrency", "limit tasks/s", "tasks/s (10→90 %)", "of limit", "vs Celery threads",
            "target", "container peak RSS MB", "worker / consumer RSS MB", "api CPU ms/task", "consumer", "worker",
            "Redis", "Redis cmds/task", "1st done after spawn s", "failed / incomplete"]  # fmt: skip
    rows = []
    celery = med(runs[IO_BASELINE], "throughput") if IO_BASELINE in runs else math.nan
    for label, rs in runs.items():
        limit = med(rs, "limit")
        of = med(rs, "throughput") / limit if limit else math.nan
        target = "≥ 95 %, < 150 MB" if label == "AsyncTaskFlow, concurrency 64" else ""
        vs = ratio(med(rs, "throughput"), celery) if limit == 320 else ""
        rows.append([label, number(limit * 0.2, 0), number(limit, 0), col(rs, "throughput"), f"{of:.0%}", vs, target,
                     col(rs, "container_rss_mb", 0), f"{col(rs, 'worker_rss_mb', 0)} / {col(rs, 'consumer_rss_mb', 0)}",
                     col(rs, "api_cpu_ms"), col(rs, "consumer_cpu_ms"), col(rs, "worker_cpu_ms"),
                     col(rs, "redis_cpu_ms"), col(rs, "redis_cmds", 1), col(rs, "first_done_s"),
                     f"{sum(r['failed'] for r in rs):.0f} / {sum(r['incomplete'] for r in rs):.0f}"])  # fmt: skip
    for name, conc, ref_limit, tput, rss in REFERENCE_IO:
        rows.append([name, conc, ref_limit, tput, "", "", "", rss, "", "", "", "", "", "", "", ""])
    note = (
        f"\n{count:,} tasks submitted through the API (32 keep-alive connections) before the worker container "
        "(`python -m worker.container`: the consumer, with the Celery threads worker as its child) starts; "
        "the stand-in answers "
        "every call after 200 ms. Throughput: tasks completed between 10 % and 90 % of the run ÷ that time. CPU "
        "ms per task over the same window (api: during the submissions); RSS: peak of the sum over the container's "
        "process tree, sampled every 0.2 s. The baseline row: the same submissions through FastAPI → `.delay()` "
        "(bench/baseline_app.py) into a Celery threads worker of the product's settings at concurrency 64, whose "
        "task makes the same call; 'vs Celery threads' compares each row at concurrency 64 with it. Reference rows: "
        "/work/shared/peers-bench/RESULTS.md (an earlier run on another machine of this kind, not this run).\n"
    )
    return "## 1. I/O-bound (LLM stand-in answers after 200 ms)\n\n" + table(head, rows) + note + "\n"


def noop_table(runs: Runs, count: int) -> str:
    labels = list(runs)
    fastapi = next((label for label in labels if label.startswith("FastAPI")), "")
    head = ["configuration", "tasks/s end to end", "tasks/s (10→90 %)", "vs FastAPI→.delay()", "target",
            "submit /s", "api CPU ms/task", "consumer", "worker", "Redis", "client", "Redis cmds/task",
            "of which EVALSHA", "worker process RSS MB", "failed / incomplete"]  # fmt: skip
    rows = []
    reference = med(runs[fastapi], "end_to_end") if fastapi else math.nan
    for label, rs in runs.items():
        target = "≥ 0.8×" if label == "AsyncTaskFlow API" else ""
        rows.append([label, col(rs, "end_to_end"), col(rs, "throughput"), ratio(med(rs, "end_to_end"), reference),
                     target, col(rs, "submit_per_s"), col(rs, "api_cpu_ms"), col(rs, "consumer_cpu_ms"),
                     col(rs, "worker_cpu_ms"), col(rs, "redis_cpu_ms"), col(rs, "client_cpu_ms"),
                     col(rs, "redis_cmds", 1), col(rs, "evalsha", 1), col(rs, "worker_rss_mb", 0),
                     f"{sum(r['failed'] for r in rs):.0f} / {sum(r['incomplete'] for r in rs):.0f}"])  # fmt: skip
    note = (
        f"\n{count:,} tasks, the stand-in answers at once, workers running (threads, concurrency 64, warmed with 3 "
        "tasks). The same client (raw keep-alive HTTP/1.1, 32 connections) drives both APIs; the bare baseline is a "
        "script calling `.delay()` in a loop. End to end: tasks ÷ (last completion − first submission). CPU ms per "
        "task over the whole run. Redis commands per task from `INFO commandstats` (commands run inside Lua "
        "scripts included).\n"
    )
    return "## 2. Overhead: no-op tasks end to end\n\n" + table(head, rows) + note + _top_commands(runs) + "\n"


def _top_commands(runs: Runs) -> str:
    rows = []
    for label, rs in runs.items():
        per = [json.loads(str(r["cmds_json"])) for r in rs if "cmds_json" in r]
        if per:
            merged = {k: statistics.median(p.get(k, 0.0) for p in per) for k in set().union(*per)}
            top = sorted(merged.items(), key=lambda kv: -kv[1])[:10]
            rows.append([label, ", ".join(f"{k} {v:.1f}" for k, v in top)])
    return "\nBusiest Redis commands per task (median of runs):\n\n" + table(["configuration", "commands"], rows)


def submit_table(runs: Runs, rate: float, seconds: float) -> str:
    head = ["API", "offered /s", "achieved /s", "p50 ms", "p90 ms", "p99 ms", "target p99", "max ms",
            "not accepted (no answer) [by status, each run]", "generator late p99 ms"]  # fmt: skip
    rows = [[label, number(rate, 0), col(rs, "achieved"), col(rs, "p50"), col(rs, "p90"), col(rs, "p99"),
             "≤ 10" if label == "AsyncTaskFlow API" else "", col(rs, "max"), _refused(rs), col(rs, "late_p99")]
            for label, rs in runs.items()]  # fmt: skip
    note = (
        f"\nOpen loop: {rate:.0f} `POST /api/v1/tasks/summarize/` per second for {seconds:.0f} s on 64 keep-alive "
        "connections (more opened if all are busy); each time counts from when the request was due, so a queue "
        "in the server cannot hide. Worker container running the real workload (200 ms stand-in, concurrency 64), "
        "except in the rows that say none runs (the API alone, to tell its own latency from the wait for a core). "
        "'Generator late' shows the load generator's own lag (it shares the cores).\n"
    )
    return "## 3. Submit latency at a fixed offered rate\n\n" + table(head, rows) + note + "\n"


def _refused(rs: list[dict[str, float]]) -> str:
    """Refusals (no answer), then every run's refusals by HTTP status."""
    by_status = [json.loads(str(r["statuses_json"])) for r in rs if r.get("statuses_json")]
    shown = "; ".join(", ".join(f"{n} × {s}" for s, n in sorted(run.items())) or "none" for run in by_status)
    return f"{col(rs, 'errors', 0)} ({col(rs, 'no_answer', 0)})" + (f" [{shown}]" if shown else "")


def pickup_table(runs: Runs, count: int) -> str:
    head = ["path", "p50 ms", "target p50", "p90 ms", "p99 ms", "max ms", "calls not seen"]
    rows = [[label, col(rs, "p50"), "≤ 10" if label.startswith("Async") else "", col(rs, "p90"), col(rs, "p99"),
             col(rs, "max"), col(rs, "missing", 0)] for label, rs in runs.items()]  # fmt: skip
    note = (
        f"\n{count} tasks, one at a time after a random 20–100 ms idle gap: from just before the submit is sent "
        "(`time.time()`) to the stand-in's arrival stamp for that text (same clock). Each waits for the previous "
        "one to finish.\n"
    )
    return "## 4. Pick-up latency on an idle system\n\n" + table(head, rows) + note + "\n"


def scale_table(found: dict[int, dict[str, list[float]]], requests: int) -> str:
    sizes = sorted(found)
    labels = [k for k in found[sizes[0]] if k != "fill_s"]
    page = 50 if 50 in found else sizes[0]
    head = ["endpoint", *[f"{s:,} tasks ms" for s in sizes], f"ratio {sizes[-1]:,} / 0", "target",
            f"ratio {sizes[-1]:,} / {page}"]  # fmt: skip
    rows = []
    for label in labels:
        cells = [cell(found[s][label]) for s in sizes]
        last, first = spread(found[sizes[-1]][label])[0], spread(found[sizes[0]][label])[0]
        target = "≤ 1.5×" if label in _guarded() else ""
        rows.append([f"`{label}`", *cells, ratio(last, first), target, ratio(last, spread(found[page][label])[0])])
    fills = ", ".join(f"{s:,} in {found[s]['fill_s'][0]:.0f} s" for s in sizes if s)
    note = (
        f"\nThe product's API process over keep-alive HTTP; each cell: median [min–max] of the rounds' medians "
        f"({requests} sequential requests per round; SSE: {max(5, requests // 5)} streams opened, time to the "
        f"`snapshot` event). Finished tasks stored through the real transitions (create, claim, complete): {fills}."
        " With 0 tasks the listing returns an empty page: the 50-task column is the full-page reference.\n"
    )
    return "## 5. Cost that must not grow with stored tasks\n\n" + table(head, rows) + note + "\n"


def _guarded() -> tuple[str, ...]:
    from bench.scale import GUARDED

    return GUARDED


def trace_table(traced: dict[str, dict[str, float]], count: int) -> str:
    from bench.trace import ROUND_TRIPS

    rows = []
    trips_total = 0.0
    for role, found in sorted(traced.items(), key=lambda kv: -sum(kv[1].values())):
        commands = {k: v for k, v in found.items() if k != ROUND_TRIPS}
        trips = found.get(ROUND_TRIPS, math.nan)
        if role not in ("inside Lua scripts", "harness / other") and not role.startswith("INFO"):
            trips_total += trips
        top = sorted(commands.items(), key=lambda kv: -kv[1])[:10]
        rows.append([role, f"{sum(commands.values()):.1f}", number(trips, 1),
                     ", ".join(f"{k} {v:.2f}" for k, v in top)])  # fmt: skip
    rows.append(["**product processes, total**", "", f"**{trips_total:.1f}** (target ≤ 15)", ""])
    note = (
        f"\n{count} no-op tasks through the API with Redis MONITOR on (no timing). Each line's client port is mapped "
        "to the process holding it; `inside Lua scripts` are the commands the transition scripts run (their "
        "EVALSHA is the caller's round trip). Round trips: a MULTI…EXEC block counts one, every other command one "
        "(a non-transaction pipeline cannot be seen in MONITOR, so this is an upper bound). The `INFO "
        "commandstats` row is the same run counted by Redis (all clients and scripts). Includes the "
        "heartbeats and polls that fall in the run (a few per second).\n"
    )
    head = ["sent by", "commands/task", "round trips/task", "busiest commands (per task)"]
    return "## 6. Redis commands per task, by process\n\n" + table(head, rows) + note + "\n"
