"""Issue 18's section of `make bench`: what priorities and fair sharing cost.

1. The claim (`claim_task.lua`) against a backlog of the same size held by 1, 10 or 1,000 owners,
   at one priority and spread over priorities 0–9. Every backlog is stored at once on the private
   redis-server (a key prefix each); claims then run in blocks, one backlog after another in
   turn, so a drift of the machine reaches them all alike. Per backlog: client-side µs per
   `TaskStore.claim` (mean, p50, p99) and the script's own µs per call on the server
   (`INFO commandstats`, EVALSHA's usec_per_call, reset before every block). Target: 1,000 owners
   ≤ 1.3× one owner.
2. No-op throughput end to end with one owner (API → consumer → Celery worker → COMPLETED, as
   the `noop` section), this source tree against the tree before issue 18 (commit 707be21, a
   `git worktree` in a temporary folder, removed afterwards), interleaved, two more repetitions
   than the rest. Target: within 5 % (the median of the paired ratios at least 0.95).

    .venv/bin/python -m bench.priorities [--quick] [--reps 3]   # = python -m bench.run --only priorities
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import claim_probe, sections
from bench.procs import ROOT
from bench.stack import PREFIX, Env
from bench.stats import cell, number, percentile, ratio, spread, table
from core.keys import DEFAULT_PRIORITY, PRIORITIES, Keys
from core.store import Ops, TaskStore
from core.task import Task

Figures = dict[str, float]
Runs = dict[str, list[Figures]]

BASELINE_COMMIT = "707be21"  # main before issue 18: one FIFO list, the claim an LMOVE
CLAIM_TARGET = 1.3  # 1,000 owners' claim ÷ one owner's, at most
NOOP_TARGET = 0.95  # this tree's no-op tasks/s ÷ the tree before issue 18, at least
BLOCK = 100  # claims per block: each block runs on one backlog, then the next backlog's
CURRENT = "this tree (issue 18), 1 owner"
BEFORE = f"before issue 18 ({BASELINE_COMMIT}), 1 owner"
BEFORE_CLAIM = f"before issue 18 ({BASELINE_COMMIT}): 1 FIFO list, LMOVE"
FALLBACK = "FastAPI → .delay() (baseline)"


@dataclass(frozen=True)
class Backlog:
    """A backlog shape: the same total held by `owners` owners, spread evenly over `levels`."""

    label: str
    owners: int
    levels: tuple[int, ...] = (DEFAULT_PRIORITY,)


ALL_LEVELS = tuple(PRIORITIES)
BACKLOGS = (
    Backlog("1 owner, priority 5", 1),
    Backlog("10 owners, priority 5", 10),
    Backlog("1,000 owners, priority 5", 1000),
    Backlog("1 owner, priorities 0–9", 1, ALL_LEVELS),
    Backlog("1,000 owners, priorities 0–9", 1000, ALL_LEVELS),
)
# (measured, reference, target or None): the ratios printed under the claim table.
COMPARED = (
    ("1,000 owners, priority 5", "1 owner, priority 5", CLAIM_TARGET),
    ("10 owners, priority 5", "1 owner, priority 5", None),
    ("1,000 owners, priorities 0–9", "1 owner, priorities 0–9", CLAIM_TARGET),
    ("1 owner, priority 5", BEFORE_CLAIM, None),
)


class BaselineUnavailable(RuntimeError):
    """The tree before issue 18 could not be checked out (no git, no such commit...)."""


# --- pure helpers ------------------------------------------------------------------------------
def owner_name(n: int) -> str:
    return f"owner-{n:04d}"


def batches(total: int, owners: int, levels: Sequence[int]) -> list[tuple[str, int, int]]:
    """(owner, priority, count) of a backlog of `total` tasks split as evenly as possible over
    `owners` × `levels` (where it does not divide, the first cells hold one more), owner by
    owner, each owner's levels in the given order. Every owner holds work at every level: a
    total smaller than owners × levels is refused rather than leaving owners out."""
    cells = [(owner_name(o), level) for o in range(owners) for level in levels]
    if not cells or total < len(cells):
        raise ValueError(f"{total} tasks cannot give {owners} owners work at each of {len(levels)} levels")
    base, extra = divmod(total, len(cells))
    return [(owner, level, base + (1 if i < extra else 0)) for i, (owner, level) in enumerate(cells)]


def claim_figures(samples_ns: Sequence[int], server_usec: float, server_calls: int) -> Figures:
    """One repetition's figures for a backlog: client µs per claim (mean, p50, p99) and the
    script's µs per call on the server (NaN without calls)."""
    us = [s / 1000 for s in samples_ns]
    return {
        "claims": float(len(us)),
        "mean_us": sum(us) / len(us) if us else math.nan,
        "p50_us": percentile(us, 50),
        "p99_us": percentile(us, 99),
        "server_us": server_usec / server_calls if server_calls else math.nan,
    }


def verdict(values: Sequence[float], at_most: float | None = None, at_least: float | None = None) -> str:
    """`pass` when every value (a ratio) is within the bounds given, `fail` when one is not, `n/a`
    when one is missing (NaN) or none is given."""
    if not values or any(math.isnan(v) for v in values):
        return "n/a"
    if any((at_most is not None and v > at_most) or (at_least is not None and v < at_least) for v in values):
        return "fail"
    return "pass"


def paired(runs: Runs, measured: str, reference: str, key: str) -> list[float]:
    """Each repetition's `measured` ÷ `reference` for one figure (they ran side by side, so the
    machine's drifts between repetitions cancel); NaN where the reference is missing or 0."""
    pairs = zip(runs.get(measured, []), runs.get(reference, []), strict=False)
    return [m.get(key, math.nan) / r[key] if r.get(key) else math.nan for m, r in pairs]


def paired_median(runs: Runs, measured: str, reference: str, key: str) -> float:
    return spread(paired(runs, measured, reference, key))[0]


# --- 1. claim cost -------------------------------------------------------------------------------
def fill(client: redis.Redis, keys: Keys, plan: list[tuple[str, int, int]]) -> None:
    """The backlog through the real create_task script, CREATE_BATCH tasks per call (one owner
    and priority per call), pipelined."""
    ops, calls = Ops(keys), []
    for owner, level, count in plan:
        for start in range(0, count, claim_probe.CREATE_BATCH):
            tasks = [Task(id=str(uuid.uuid4()), task_type="summarize", content="Benchmark text.", max_retries=3,
                          owner=owner, priority=level)
                     for _ in range(min(claim_probe.CREATE_BATCH, count - start))]  # fmt: skip
            calls.append(ops.create(tasks))
    claim_probe.fill_calls(client, calls)


Block = Callable[[int], tuple[list[int], float, int]]  # n claims → (ns each, server µs, server calls)


class Probe:
    """bench/claim_probe.py in a process of its own, running the code of the tree at `root` on a
    backlog of `total` tasks under `prefix`; `block(n)` times n claims there."""

    def __init__(self, root: Path, env: Env, prefix: str, total: int) -> None:
        argv = [sys.executable, str(Path(claim_probe.__file__).resolve()), env.redis_url, prefix, str(total)]
        self.proc = subprocess.Popen(argv, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        self.fill_s = float(self._answer()["ready"])

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench/claim_probe.py stopped (exit {self.proc.wait(10)}): see the error above")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def block(self, count: int) -> tuple[list[int], float, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"claim {count}\n")
        self.proc.stdin.flush()
        got = self._answer()
        return list(got["ns"]), float(got["usec"]), int(got["calls"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def _store_block(env: Env, store: TaskStore) -> Block:
    return lambda count: claim_probe.timed_block(env.r, store, count)


def claim_rep(env: Env, total: int, claims: int, before: Path | None) -> dict[str, Figures]:
    """One repetition: every backlog stored (a prefix each; with `before`, also the tree before
    issue 18's on one FIFO list, claimed by its own code in a process of its own), warmed, then
    `claims` claims on each in blocks of BLOCK, the backlogs in turn (a round's first rotating)."""
    env.reset()
    blocks: dict[str, Block] = {}
    fill_s: dict[str, float] = {}
    probe = None
    try:
        for i, backlog in enumerate(BACKLOGS):
            keys = Keys(f"{PREFIX}claims{i}:")
            started = time.monotonic()
            fill(env.r, keys, batches(total, backlog.owners, backlog.levels))
            fill_s[backlog.label] = time.monotonic() - started
            blocks[backlog.label] = _store_block(env, TaskStore(env.r, keys))
        if before is not None:
            probe = Probe(before, env, f"{PREFIX}claims-before:", total)
            blocks[BEFORE_CLAIM], fill_s[BEFORE_CLAIM] = probe.block, probe.fill_s
        figures = _claim_rounds(blocks, claims)
    finally:
        if probe is not None:
            probe.close()
    for label, seconds in fill_s.items():
        figures[label]["fill_s"] = seconds
    return figures


def _claim_rounds(blocks: dict[str, Block], claims: int) -> dict[str, Figures]:
    for block in blocks.values():
        block(20)  # scripts loaded, connections warm
    found: dict[str, tuple[list[int], float, int]] = {label: ([], 0.0, 0) for label in blocks}
    labels = list(blocks)
    for n, start in enumerate(range(0, claims, BLOCK)):
        for label in labels[n % len(labels) :] + labels[: n % len(labels)]:
            samples, usec, calls = blocks[label](min(BLOCK, claims - start))
            kept, total_usec, total_calls = found[label]
            found[label] = (kept + samples, total_usec + usec, total_calls + calls)
    return {label: claim_figures(*got) for label, got in found.items()}


def claim_runs(env: Env, total: int, claims: int, reps: int, before: Path | None, log: Callable[[str], None]) -> Runs:
    runs: Runs = {}
    for rep in range(reps):
        started = time.monotonic()
        for label, figures in claim_rep(env, total, claims, before).items():
            runs.setdefault(label, []).append(figures)
        log(f"  claims run {rep + 1}/{reps}: {time.monotonic() - started:.0f}s")
    return runs


# --- 2. no-op throughput, this tree against the one before issue 18 -------------------------------
def _git(*args: str) -> None:
    subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def tree_at(commit: str) -> Iterator[Path]:
    """A checkout of `commit` in a temporary folder (`git worktree add --detach`: the checkout in
    ROOT, its index and its uncommitted work are not touched), removed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix=f"atf-bench-{commit}-"))
    path = tmp / "tree"
    try:
        _git("worktree", "add", "--detach", str(path), commit)
    except (OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        detail = getattr(e, "stderr", "") or str(e)
        raise BaselineUnavailable(f"git worktree add {commit} failed: {detail.strip()}") from e
    try:
        yield path
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _git("worktree", "remove", "--force", str(path))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _git("worktree", "prune")


def noop_configs(env: Env, count: int, before: Path | None) -> dict[str, Callable[[], Figures]]:
    """This tree and the tree before issue 18 (`before`); without it, FastAPI → .delay() instead."""
    configs: dict[str, Callable[[], Figures]] = {CURRENT: lambda: sections.noop_run(env, "atf", count)}
    if before is not None:
        configs[BEFORE] = lambda: sections.noop_run(env, "atf", count, root=before)
    else:
        configs[FALLBACK] = lambda: sections.noop_run(env, "fastapi", count)
    return configs


@contextlib.contextmanager
def before_tree(log: Callable[[str], None]) -> Iterator[tuple[Path | None, str]]:
    """(the checkout before issue 18, '') or, when it cannot be made, (None, why)."""
    try:
        with tree_at(BASELINE_COMMIT) as before:
            yield before, ""
    except BaselineUnavailable as e:
        log(f"  {e}: the tree before issue 18 is left out")
        yield None, str(e)


def alternate(configs: dict[str, Callable[[], Figures]], reps: int, log: Callable[[str], None]) -> Runs:
    """Every configuration once per repetition, in the given order in even repetitions and the
    reverse in odd ones, so that neither of a pair always runs first (the machine's state after
    the other's run, a background flush, a drift within the pair weigh on both alike)."""
    runs: Runs = {label: [] for label in configs}
    for rep in range(reps):
        for label in list(configs)[:: -1 if rep % 2 else 1]:
            started = time.monotonic()
            runs[label].append(configs[label]())
            log(f"  {label} run {rep + 1}/{reps}: {time.monotonic() - started:.0f}s")
    return runs


def section(env: Env, total: int, claims: int, noop_tasks: int, reps: int,
            log: Callable[[str], None]) -> tuple[str, dict[str, object]]:  # fmt: skip
    """The whole section: its Markdown and every run's figures."""
    with before_tree(log) as (before, missing):
        log("  claim cost")
        claimed = claim_runs(env, total, claims, reps, before, log)
        log("  no-op throughput")
        noop = alternate(noop_configs(env, noop_tasks, before), reps + 2, log)
    text = claim_table(claimed, total, claims) + noop_table(noop, noop_tasks, missing)
    return "## 7. Priorities and fair sharing (issue 18)\n\n" + text, {"claims": claimed, "noop": noop}


# --- Markdown ------------------------------------------------------------------------------------
def _col(runs: Sequence[Figures], key: str, digits: int | None = None) -> str:
    return cell([r.get(key, math.nan) for r in runs], digits)


def claim_table(runs: Runs, total: int, claims: int) -> str:
    head = ["backlog", "owners × tasks each", "priorities", "server µs/claim (EVALSHA)", "client µs mean", "p50", "p99",
            "fill s"]  # fmt: skip
    rows = []
    for backlog in BACKLOGS:
        first, last = backlog.levels[0], backlog.levels[-1]
        levels = f"{first}–{last}, even" if first != last else str(first)
        owners = f"{backlog.owners:,} × {total // backlog.owners:,}"
        rows.append([backlog.label, owners, levels, *_claim_cells(runs.get(backlog.label, []))])
    if BEFORE_CLAIM in runs:
        rows.append([BEFORE_CLAIM, f"1 × {total:,}", "none", *_claim_cells(runs[BEFORE_CLAIM])])
    head2 = ["ratio", "server µs", "client mean", "client p50", "client p99", "target", "verdict"]
    rows2 = []
    for measured, reference, target in COMPARED:
        if measured not in runs or reference not in runs:
            continue
        q = {key: paired_median(runs, measured, reference, key) for key in ("server_us", "mean_us", "p50_us", "p99_us")}
        judged = verdict([q["server_us"], q["mean_us"]], at_most=target) if target else ""
        rows2.append([f"{measured} / {reference}", *(ratio(v, 1.0) for v in q.values()),
                      f"≤ {target}×" if target else "", judged])  # fmt: skip
    note = (
        f"\nA backlog of {total:,} PENDING tasks per row, all stored at once on the private redis-server "
        f"(a key prefix each) through `create_task`; then {claims:,} claims (`TaskStore.claim`, one consumer, "
        f"new work) on each, in blocks of {BLOCK} taken from the backlogs in turn, so every row meets the same "
        "moments of the machine. Server µs: EVALSHA's usec ÷ calls from `INFO commandstats`, reset before "
        "every block (the script alone); client µs: the call as the consumer makes it (round trip and "
        "redis-py included). Each cell: median [min–max] of the repetitions; each ratio: the median of the "
        "repetitions' ratios. The verdict needs both the server and the client mean ratios within the target.\n\n"
    )
    return "### Claim cost against the number of owners\n\n" + table(head, rows) + "\n" + table(head2, rows2) + note


def _claim_cells(rs: Sequence[Figures]) -> list[str]:
    return [_col(rs, "server_us"), _col(rs, "mean_us"), _col(rs, "p50_us"), _col(rs, "p99_us"), _col(rs, "fill_s")]


def noop_verdict(pairs: Sequence[float]) -> str:
    """The verdict on the median of the paired ratios; flagged when the pairs fall on both sides of
    the target, i.e. when the machine's noise is wider than the margin judged."""
    found = verdict([spread(pairs)[0]], at_least=NOOP_TARGET)
    kept = [v for v in pairs if not math.isnan(v)]
    if found != "n/a" and min(kept) < NOOP_TARGET <= max(kept):
        found += " (noisy: pairs on both sides)"
    return found


def all_cpu_ms(figures: Figures) -> float:
    """CPU ms per task of every process of a no-op run: the product's (the container counts its
    consumer and Celery worker), Redis, the stand-in and the load generator."""
    roles = ("api", "scheduler", "container", "redis", "stub", "client")
    return sum(figures.get(f"{role}_cpu_ms", 0.0) for role in roles)


def noop_table(runs: Runs, count: int, missing: str) -> str:
    reference = BEFORE if BEFORE in runs else FALLBACK
    head = ["code", "tasks/s end to end", "tasks/s (10→90 %)", f"vs {reference.split(',')[0]}, paired", "target",
            "verdict", "CPU ms/task, all processes", "CPU vs before, paired", "api", "consumer", "worker", "Redis",
            "Redis cmds/task", "of which EVALSHA", "failed / incomplete"]  # fmt: skip
    pairs = paired(runs, CURRENT, reference, "end_to_end")
    cpu = {label: [{"cpu": all_cpu_ms(r)} for r in rs] for label, rs in runs.items()}
    rows = []
    for label, rs in runs.items():
        mine = label == CURRENT
        rows.append([label, _col(rs, "end_to_end"), _col(rs, "throughput"), _times(pairs if mine else [1.0]),
                     f"≥ {NOOP_TARGET}×" if mine else "", noop_verdict(pairs) if mine else "",
                     _col(cpu[label], "cpu"), _times(paired(cpu, label, reference, "cpu")),
                     _col(rs, "api_cpu_ms"), _col(rs, "consumer_cpu_ms"),
                     _col(rs, "worker_cpu_ms"), _col(rs, "redis_cpu_ms"), _col(rs, "redis_cmds", 1),
                     _col(rs, "evalsha", 1),
                     f"{sum(r['failed'] for r in rs):.0f} / {sum(r['incomplete'] for r in rs):.0f}"])  # fmt: skip
    each = ", ".join(f"{number(v)}×" for v in pairs)
    why = f" **The tree before issue 18 did not run** ({missing}): compared with {FALLBACK} instead." if missing else ""
    note = (
        f"\n{count:,} no-op tasks through the API, one owner (no API keys), as section 2 measures them, with this "
        f"source tree and with commit {BASELINE_COMMIT} (main before issue 18: one FIFO list, the claim an LMOVE) "
        "checked out in a temporary `git worktree`, its processes run from there on the same interpreter, the "
        "same Redis and the same stand-in. The two alternate run by run (A B, B A, …), two more repetitions than "
        "the other figures (a 5 % verdict on a shared machine needs them). 'Paired': each repetition's ratio of "
        "end-to-end tasks/s (or CPU) to the other tree's run beside it, median [min–max]; the verdict reads the "
        f"median. Each repetition's ratio: {each or 'n/a'}. CPU ms per task over the whole run; 'all processes' "
        "adds the API, the scheduler, the container (consumer and worker), Redis, the stand-in and the load "
        f"generator: on a machine whose cores the run fills, tasks/s goes about as its inverse.{why}\n"
    )
    return "### No-op throughput with one owner, against the code before issue 18\n\n" + table(head, rows) + note


def _times(values: Sequence[float]) -> str:
    """`median× [min–max]` of ratios (a single value alone)."""
    mid, low, high = spread(values)
    if math.isnan(mid):
        return "n/a"
    return f"{mid:.2f}×" if len(values) == 1 else f"{mid:.2f}× [{low:.2f}–{high:.2f}]"


def main(argv: list[str] | None = None) -> None:
    """Runs this section alone, through bench/run.py (its header, its results file)."""
    from bench import run  # here: bench.run imports this module

    run.main(["--only", "priorities", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
