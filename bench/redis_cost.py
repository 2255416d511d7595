"""Issue 19's section of `make bench`: Redis's own time per completed task, from `INFO commandstats`.

Tasks go through their whole life with the product's own code, in this process, on the private
redis-server (no API, no Celery worker): `AsyncTaskStore.create_many` with one task, as a submit
(api), `TaskStore.claim` (consumer), the Celery hand-off as it reaches Redis (`send_task`'s LPUSH
by the consumer, the worker's BRPOP, through kombu and the product's transport), and
`TaskStore.complete` with token usage (worker). Each step runs on a block of BLOCK tasks, then the
next step on the same block; `INFO commandstats` is read between steps, so each step's commands
are known apart. A reference script (REFERENCE: 17 HINCRBY on one hash, a `cjson.encode`, one
PUBLISH) runs as many times in blocks between them, each call its own round trip like the
product's, so the machine's drifts reach both alike: machines differ, the ratio is what is judged.
Two more scripts are timed the same way, to split a script's cost: `return 1` (any script call) and
the `_lib.lua` helpers claim_task uses, alone (what an EVALSHA script defines on every call before its own
work). Redis's CPU over each step is read too (its main thread, /proc/<pid>/schedstat): it adds reading requests and
writing replies, which commandstats does not see.

Each µs is counted once. A command a script runs appears under its own name in commandstats and
inside the script's FCALL (EVALSHA on Redis 6.2), whose usec covers the whole script. So a task's Redis
µs is the sum of the commands clients sent (the FCALLs, LPUSH, BRPOP); the rest of a script step's entries are
the commands inside it, counted as commands per task, never again as µs. A script's µs beyond its
commands' own is its Lua: the calls from Lua into Redis, arguments, cjson, the script's logic.

Which scripts a task runs is read from a SLOWLOG sample (every command logged, for a few tasks, not
timed: logging costs time inside scripts): each FCALL by its function, each EVALSHA by its sha.

    .venv/bin/python -m bench.redis_cost [--quick] [--tasks N] [--reps R]  # or python -m bench.run --only redis_cost
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis

from bench import cost_probe
from bench.cost_probe import STEP_KEYS, Life, script_shas
from bench.priorities import BaselineUnavailable, tree_at
from bench.stack import PREFIX, WORKER_ID, Env
from bench.stats import cell, number, spread, table
from core.keys import Keys
from core.lua import function_name, helpers, names

Stats = dict[str, tuple[int, int]]  # command → (calls, usec)
Run = dict[str, Stats]  # step → what Redis counted during it
Cpu = dict[str, int]  # step → ns Redis's main thread ran during it
Figures = dict[str, float]
V = TypeVar("V")

BLOCK = 100  # tasks per block: each step runs on the whole block before the next step
WARM = 10  # tasks (and reference calls) before anything is counted: scripts loaded, queue declared
SAMPLE = 20  # tasks whose commands SLOWLOG records, to name the scripts a task runs
TARGET = 4.5  # a task's life ÷ the reference script, at most (issue 19; about 14× before it)
TARGET_US = 150  # … about this many µs per task on an idle machine
# The code before the reduction (issue 19, part 4: its branch point), measured in the same run
# from a `git worktree` of it, under its own key prefix and steps' tag.
BEFORE_COMMIT = "5e408c6"  # the default of --before
BEFORE_TAG = "before:"
BEFORE_PREFIX = f"{PREFIX}before:"

# The reference script of issue 19: fixed work, timed in the same run, since machines differ
# (47–55 µs per call on a slow shared machine). KEYS: 1 a hash, 2 a channel; ARGV: 1 an id.
REFERENCE = """\
for i = 1, 17 do redis.call('HINCRBY', KEYS[1], 'field' .. i, 1) end
local event = {event = 'transition', task_id = ARGV[1], from = 'PENDING', to = 'ACTIVE', at = 0}
redis.call('PUBLISH', KEYS[2], cjson.encode(event))
return 1
"""
REFERENCE_NAME = "reference script"

SCRIPT_COMMANDS = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"})
# What the harness itself sends (the reads of the stats, the slowlog's settings, connections
# made): left out of every step.
HARNESS = frozenset({"info", "config|resetstat", "config|get", "config|set", "slowlog|get", "slowlog|reset",
                     "slowlog|len", "hello", "client|setinfo", "client|setname", "select", "ping"})  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One step of a task's life: `key` in a Run; `script` when its client sends one script call (the
    step's other commands then ran inside it, but those named in `beside`: its client sends them
    itself, beside the script, and their µs count as the step's)."""

    key: str
    label: str
    sender: str
    script: bool
    beside: frozenset[str] = frozenset()


STEPS = (
    Step("create_task", "create_task.lua", "api: `AsyncTaskStore.create_many`, 1 task", True),
    # The claim reads the head of the list it names (LINDEX), beside its script.
    Step("claim_task", "claim_task.lua", "consumer: `TaskStore.claim` (and its LINDEX)", True, frozenset({"lindex"})),
    Step("handoff", "Celery hand-off", "consumer: `send_task` (LPUSH); worker: BRPOP", False),
    Step("complete_task", "complete_task.lua", "worker: `TaskStore.complete`, with usage", True),
    Step("fold_tally", "fold_tally.lua", "scheduler: `TaskStore.fold_tally`, once per block", True),
)
REF = Step("reference", REFERENCE_NAME, "the bench (`EVALSHA`)", True)
# Scripts timed like the reference, to split a script's own µs: what any script call costs, and what
# the `_lib.lua` helpers cost that core/lua.py prepends to an EVALSHA script (those it uses, defined
# on every call; Redis 6.2 only, as a function library defines them once): claim_task's.
EMPTY = Step("empty", "`return 1`", "the bench: any script call", True)
PRELUDE = Step(
    "prelude",
    "claim_task's `_lib.lua` helpers + `return 1`",
    "the bench: what EVALSHA defines per call (Redis 6.2)",
    True,
)
BESIDE = (REF, EMPTY, PRELUDE)  # timed in every block beside the task's life


def beside_sources() -> dict[str, str]:
    """The source of each script timed beside the task's life, by step."""
    return {REF.key: REFERENCE, EMPTY.key: "return 1", PRELUDE.key: helpers("claim_task") + "\nreturn 1"}


# --- pure helpers ------------------------------------------------------------------------------
def parse_commandstats(info: Mapping[str, Any]) -> Stats:
    """`INFO commandstats` as redis-py parses it ({'cmdstat_hincrby': {'calls': 3, 'usec': 8, ...}}):
    command → (calls, usec); subcommands as Redis names them (`config|resetstat`)."""
    found: Stats = {}
    for name, values in info.items():
        if name.startswith("cmdstat_"):
            found[name.removeprefix("cmdstat_").lower()] = (int(values["calls"]), int(values["usec"]))
    return found


def parse_commandstats_text(text: str) -> Stats:
    """The same from INFO's raw text (`cmdstat_hincrby:calls=3,usec=8,usec_per_call=2.67,...` lines)."""
    rows: dict[str, Any] = {}
    for line in text.splitlines():
        name, _, values = line.strip().partition(":")
        if name.startswith("cmdstat_"):
            rows[name] = dict(pair.split("=", 1) for pair in values.split(","))
    return parse_commandstats(rows)


def delta(before: Stats, after: Stats, ignore: Iterable[str] = HARNESS) -> Stats:
    """What was counted between two readings, without the `ignore`d commands; commands with no
    new call are left out."""
    skipped = set(ignore)
    found: Stats = {}
    for command, (calls, usec) in after.items():
        was_calls, was_usec = before.get(command, (0, 0))
        if command not in skipped and calls > was_calls:
            found[command] = (calls - was_calls, usec - was_usec)
    return found


def add(total: Stats, more: Stats) -> Stats:
    """`total` with `more` added to it, command by command (a new dict)."""
    summed = dict(total)
    for command, (calls, usec) in more.items():
        was_calls, was_usec = summed.get(command, (0, 0))
        summed[command] = (was_calls + calls, was_usec + usec)
    return summed


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def script_names(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The name of every transition script by what calls it: FCALL's function name, EVALSHA's sha1
    (of core/lua.py's full source: its `_lib.lua` helpers included); and of `extra` (name → source)."""
    functions = {function_name(name): name for name in names()}
    return functions | script_shas() | {sha1(text): name for name, text in (extra or {}).items()}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def scripts_called(entries: Sequence[Sequence[Any]], by_sha: Mapping[str, str]) -> Counter[str]:
    """Script calls by name in raw `SLOWLOG GET` entries ([id, time, µs, argv, peer, client name]):
    an FCALL by its function, an EVALSHA by its sha (unknown: `function <name>`, `sha <first 8>`); an
    EVAL (its source is cut short in the log) as `EVAL (source sent)`."""
    found: Counter[str] = Counter()
    for entry in entries:
        argv = [_text(a) for a in entry[3]]
        command = argv[0].lower() if argv else ""
        if command in ("fcall", "fcall_ro") and len(argv) > 1:
            found[by_sha.get(argv[1], f"function {argv[1]}")] += 1
        elif command in ("evalsha", "evalsha_ro") and len(argv) > 1:
            found[by_sha.get(argv[1].lower(), f"sha {argv[1][:8]}")] += 1
        elif command in ("eval", "eval_ro"):
            found["EVAL (source sent)"] += 1
    return found


def sent(stats: Stats, step: Step) -> Stats:
    """The commands a client sent in a step: in a script's step its FCALL (EVALSHA) and those
    `beside` it, otherwise all."""
    return {c: v for c, v in stats.items() if not step.script or c in SCRIPT_COMMANDS or c in step.beside}


def script_calls(stats: Stats) -> Stats:
    return {c: v for c, v in stats.items() if c in SCRIPT_COMMANDS}


def inside(stats: Stats, step: Step) -> Stats:
    """The commands a script ran (nothing in a step without one)."""
    return {c: v for c, v in stats.items() if step.script and c not in SCRIPT_COMMANDS and c not in step.beside}


def _total(stats: Stats) -> tuple[int, int]:
    return sum(c for c, _ in stats.values()), sum(u for _, u in stats.values())


def step_figures(stats: Stats, step: Step, tasks: int) -> Figures:
    """One step's figures per task: calls and µs the clients' commands cost (`us_task`, each µs
    once), µs per call, commands inside per call, and a script's own µs per call beyond those."""
    calls, usec = _total(script_calls(stats) if step.script else stats)
    inner_calls, inner_usec = _total(inside(stats, step))
    per_call = usec / calls if calls else math.nan
    return {
        "calls": calls / tasks,
        "us_call": per_call,
        "us_task": _total(sent(stats, step))[1] / tasks,
        "inner_call": inner_calls / calls if calls else math.nan,
        "lua_call": (usec - inner_usec) / calls if calls and step.script else math.nan,
    }


def life_figures(run: Run, tasks: int, cpu: Cpu | None = None) -> Figures:
    """A repetition's figures: each step's (`<step>:<figure>`), the task's Redis µs counted once
    (`us_task`; `us_twice`: every entry added up, inner commands counted twice), commands per
    task counting those inside scripts, scripts per task, the
    reference script's µs per call and the ratio of the two (and the other BESIDE scripts'
    figures per call, `<step>:<figure>`); with `cpu`, the same from Redis's CPU time (`cpu_task`,
    `ref_cpu`, `cpu_ratio`: reading requests and writing replies included)."""
    figures: Figures = {}
    us = commands = scripts = twice = 0.0
    for step in STEPS:
        stats = run.get(step.key, {})
        for name, value in step_figures(stats, step, tasks).items():
            figures[f"{step.key}:{name}"] = value
        us += figures[f"{step.key}:us_task"]
        commands += _total(stats)[0] / tasks
        twice += _total(stats)[1] / tasks
        scripts += _total({c: v for c, v in stats.items() if c in SCRIPT_COMMANDS})[0] / tasks
    for step in BESIDE:
        for name, value in step_figures(run.get(step.key, {}), step, 1).items():
            figures[f"{step.key}:{name}"] = value
    ref_us = figures[f"{REF.key}:us_call"]
    figures |= {"us_task": us, "commands": commands, "scripts": scripts, "ref_us": ref_us, "us_twice": twice}
    figures["ratio"] = us / ref_us if ref_us else math.nan
    # What calling one command from Lua costs beyond the command's own µs, by the reference script.
    empty, inner = figures[f"{EMPTY.key}:lua_call"], figures[f"{REF.key}:inner_call"]
    figures["lua_per_command"] = (figures[f"{REF.key}:lua_call"] - empty) / inner if inner else math.nan
    return figures | cpu_figures(cpu or {}, tasks, _total(sent(run.get(REF.key, {}), REF))[0])


def cpu_figures(cpu: Cpu, tasks: int, ref_calls: int) -> Figures:
    """Redis's CPU µs per task (its steps added up), per reference call, and their ratio; NaN
    where a step was not measured."""
    per_task = sum(cpu.get(step.key, math.nan) for step in STEPS) / 1000 / tasks
    per_ref = cpu.get(REF.key, math.nan) / 1000 / ref_calls if ref_calls else math.nan
    return {"cpu_task": per_task, "ref_cpu": per_ref, "cpu_ratio": per_task / per_ref if per_ref else math.nan}


def pooled(runs: Sequence[Run]) -> Run:
    """Every repetition's counts added up, step by step."""
    total: Run = {}
    for run in runs:
        for key, stats in run.items():
            total[key] = add(total.get(key, {}), stats)
    return total


LUA_OWN = "its Lua (beyond its commands)"
LUA_REST = "its Lua: calls into Redis, cjson, its logic"
LUA_CALL = "the call itself (what `return 1` costs)"
Contributor = tuple[str, str, float, float]  # step, what, calls per task, µs per task


def contributors(run: Run, tasks: int, call_us: float = math.nan) -> list[Contributor]:
    """(step, command, calls per task, µs per task) of everything a task's Redis µs is made of,
    largest first: each command inside a script, each script's own Lua µs, each command sent
    outside one. Together they add up to the task's µs (each counted once). Given `call_us` (what
    a script call that does nothing costs), a script's Lua is split into that, per call, and the rest."""
    rows: list[Contributor] = []
    for step in STEPS:
        stats = run.get(step.key, {})
        parts = inside(stats, step) if step.script else stats
        besides = {c: v for c, v in stats.items() if c in step.beside}
        rows += [(step.label, command.upper(), c / tasks, u / tasks) for command, (c, u) in (parts | besides).items()]
        if step.script:
            calls, usec = _total(script_calls(stats))
            rows += _lua_rows(step.label, calls / tasks, (usec - _total(parts)[1]) / tasks, call_us)
    return sorted(rows, key=lambda row: -row[3])


def _lua_rows(label: str, calls: float, lua_us: float, call_us: float) -> list[Contributor]:
    if math.isnan(call_us):
        return [(label, LUA_OWN, calls, lua_us)]
    return [(label, LUA_CALL, calls, call_us * calls), (label, LUA_REST, calls, lua_us - call_us * calls)]


def verdict(ratio: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    return "pass" if ratio <= TARGET else "fail"


# --- the run -----------------------------------------------------------------------------------
def main_thread_ns(pid: int) -> Callable[[], int] | None:
    """A reader of the CPU time (ns) the process's main thread ran, from /proc/<pid>/schedstat (Linux;
    the tick-based counters of /proc/<pid>/stat are 10 ms coarse); None where there is none. Redis
    runs every command on its main thread; its background threads (lazy freeing, fsync) are not
    counted."""
    path = f"/proc/{pid}/schedstat"

    def read() -> int:
        with open(path) as f:
            return int(f.read().split()[0])

    try:
        read()
    except (OSError, ValueError, IndexError):
        return None
    return read


class Meter:
    """Reads `INFO commandstats` after each step and adds what changed to that step's counts; with
    `cpu`, also the CPU ns Redis ran meanwhile (each step's includes one INFO, about 0.5 µs per
    task in blocks of BLOCK)."""

    def __init__(self, client: redis.Redis, cpu: Callable[[], int] | None = None) -> None:
        self.client = client
        self.cpu = cpu
        self.run: Run = {}
        self.cpu_ns: Cpu = {}
        self.last = self.read()
        self.last_ns = cpu() if cpu else 0

    def read(self) -> Stats:
        stats: dict[str, Any] = self.client.info("commandstats")  # type: ignore[assignment]
        return parse_commandstats(stats)

    def step(self, key: str, work: Callable[[], object]) -> None:
        work()
        if self.cpu:
            ns = self.cpu()
            self.cpu_ns[key] = self.cpu_ns.get(key, 0) + ns - self.last_ns
            self.last_ns = ns
        now = self.read()
        self.run[key] = add(self.run.get(key, {}), delta(self.last, now))
        self.last = now


class Beside:
    """The scripts timed beside the task's life (BESIDE), on the bench's server."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        reference = Keys(f"{PREFIX}reference:")
        self.ref_keys = [reference.counters, reference.events]
        self.scripts = {key: client.register_script(text) for key, text in beside_sources().items()}

    def run(self, key: str, count: int) -> None:
        """`count` calls of one BESIDE script, each its own round trip."""
        script = self.scripts[key]
        keys = self.ref_keys if key == REF.key else []
        for n in range(count):
            script(keys=keys, args=[f"ref-{n}"], client=self.client)


class RemoteLife:
    """bench/cost_probe.py in a process of its own, running the code of the tree at `root` (under
    its own key prefix) on the bench's server: `run_step` as Life's, `scripts` its sha → name."""

    def __init__(self, root: Path, env: Env) -> None:
        argv = [sys.executable, "-P", str(Path(cost_probe.__file__).resolve()), env.redis_url, BEFORE_PREFIX, WORKER_ID]
        self.proc = subprocess.Popen(argv, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        self.scripts: dict[str, str] = dict(self._answer()["scripts"])

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench/cost_probe.py stopped (exit {self.proc.wait(10)}): see the error above")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run_step(self, step: str, count: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{step} {count}\n")
        self.proc.stdin.flush()
        self._answer()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def lives(life: Life | RemoteLife, count: int, meter: Meter | None = None, tag: str = "") -> None:
    """`count` tasks through their whole life, step by step, each step counted by `meter` under
    `tag` + its key."""
    for key in STEP_KEYS:
        work = functools.partial(life.run_step, key, count)
        if meter:
            meter.step(tag + key, work)
        else:
            work()


def settle(client: redis.Redis, timeout: float = 300) -> None:
    """Wait until a FLUSHALL ASYNC has freed everything: its background thread would share the
    cores with what is measured."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        memory: dict[str, Any] = client.info("memory")  # type: ignore[assignment]
        if not int(memory.get("lazyfree_pending_objects", 0)):
            return
        time.sleep(0.1)


def sample_scripts(client: redis.Redis, life: Life | RemoteLife, count: int, by_sha: Mapping[str, str]) -> Counter[str]:
    """The scripts `count` tasks' lives run, by name: every command logged (SLOWLOG at 0 µs) while
    they run one by one, each EVALSHA named by its sha (`by_sha`); the server's settings restored
    after."""
    saved: dict[str, str] = client.config_get("slowlog-*")  # type: ignore[assignment]
    room = 2000 * count
    client.config_set("slowlog-max-len", room)
    client.config_set("slowlog-log-slower-than", 0)
    try:
        client.slowlog_reset()
        for _ in range(count):
            lives(life, 1)
        entries = client.execute_command("SLOWLOG", "GET", -1)
    finally:
        for name, value in saved.items():
            client.config_set(name, value)
    if len(entries) >= room:
        raise RuntimeError(f"SLOWLOG kept only {room} entries: the sample's commands did not all fit")
    return scripts_called(entries, by_sha)


def one_rep(
    env: Env, tasks: int, before: Path | None = None, commit: str = BEFORE_COMMIT
) -> tuple[Run, Cpu, Counter[str]]:
    """One repetition on an emptied server: warm-up, the SLOWLOG sample, then `tasks` lives of this
    tree's code (and with `before`, a checkout of `commit`, of that tree's, under BEFORE_TAG) and as
    many calls of each BESIDE script, in blocks of BLOCK, each block's parts in a rotating order."""
    env.reset()
    settle(env.r)
    ours = Life(env.redis_url, PREFIX, WORKER_ID)
    parties: dict[str, Life | RemoteLife] = {"": ours}
    try:
        if before is not None:
            parties[BEFORE_TAG] = RemoteLife(before, env)
        beside = Beside(ours.consumer.r)
        for life in parties.values():
            lives(life, WARM)
        for step in BESIDE:
            beside.run(step.key, WARM)
        called = sample_scripts(env.r, ours, SAMPLE, script_names())
        if before is not None:
            remote = parties[BEFORE_TAG]
            assert isinstance(remote, RemoteLife)
            by_sha = {sha: f"{name} (before, {commit})" for sha, name in remote.scripts.items()}
            called += sample_scripts(env.r, remote, SAMPLE, by_sha)
        meter = Meter(env.r, main_thread_ns(env.redis_proc.pid))
        for n, start in enumerate(range(0, tasks, BLOCK)):
            _block(parties, beside, meter, min(BLOCK, tasks - start), n)
    finally:
        for life in parties.values():
            life.close()
    return meter.run, meter.cpu_ns, called


def _block(parties: dict[str, Life | RemoteLife], beside: Beside, meter: Meter, count: int, n: int) -> None:
    """Block `n`: `count` lives of each party and as many calls of each BESIDE script, the parts
    in turn first (so that no part always follows the same other)."""
    parts = [functools.partial(lives, life, count, meter, tag) for tag, life in parties.items()]
    parts.append(functools.partial(_beside, beside, meter, count))
    for part in parts[n % len(parts) :] + parts[: n % len(parts)]:
        part()


def _beside(beside: Beside, meter: Meter, count: int) -> None:
    for step in BESIDE:
        meter.step(step.key, functools.partial(beside.run, step.key, count))


@contextlib.contextmanager
def before_tree(log: Callable[[str], None], commit: str) -> Iterator[tuple[Path | None, str]]:
    """(a checkout of `commit`, '') or, when it cannot be made, (None, why)."""
    try:
        with tree_at(commit) as before:
            yield before, ""
    except BaselineUnavailable as e:
        log(f"  {e}: the code before is left out")
        yield None, str(e)


def section(
    env: Env, tasks: int, reps: int, log: Callable[[str], None], commit: str = BEFORE_COMMIT
) -> tuple[str, dict[str, object]]:
    """The whole section: its Markdown and every repetition's counts, beside the code at `commit`."""
    runs: list[Run] = []
    cpus: list[Cpu] = []
    called: Counter[str] = Counter()
    with before_tree(log, commit) as (before, missing):
        for rep in range(reps):
            started = time.monotonic()
            run, cpu, sample = one_rep(env, tasks, before, commit)
            runs.append(run)
            cpus.append(cpu)
            called += sample
            log(f"  redis_cost run {rep + 1}/{reps}: {time.monotonic() - started:.0f}s")
    text = cost_table(runs, cpus, tasks, called, SAMPLE * reps, missing, commit)
    data = {"tasks": tasks, "runs": runs, "cpu_ns": cpus, "sampled_scripts": dict(called), "before": commit}
    return "## 8. Redis time per completed task (issue 19)\n\n" + text, data


# --- Markdown ----------------------------------------------------------------------------------
def _col(figures: Sequence[Figures], key: str, digits: int | None = None) -> str:
    """`median [min–max]` of the repetitions; a figure the same in all of them (a count) alone."""
    values = [f.get(key, math.nan) for f in figures]
    _, low, high = spread(values)
    return number(low, digits) if number(low, digits) == number(high, digits) else cell(values, digits)


def _busiest(stats: Stats, calls: int, count: int = 3) -> str:
    """A script's costliest commands inside, µs per call of the script (and how many it runs)."""
    rows = sorted(stats.items(), key=lambda item: -item[1][1])[:count]
    return ", ".join(f"{c.upper()} ×{n / calls:.3g} {u / calls:.1f} µs" for c, (n, u) in rows) if calls else ""


def before_view(run: dict[str, V]) -> dict[str, V]:
    """The run as the code before saw it: its steps (tagged BEFORE_TAG) under their own keys,
    beside the same BESIDE scripts. Works as well for a Cpu (step → ns)."""
    view = {step.key: run[BEFORE_TAG + step.key] for step in STEPS if BEFORE_TAG + step.key in run}
    return view | {step.key: run[step.key] for step in BESIDE if step.key in run}


def cost_table(
    runs: Sequence[Run], cpus: Sequence[Cpu], tasks: int, called: Counter[str], sampled: int, missing: str = "",
    commit: str = BEFORE_COMMIT,
) -> str:  # fmt: skip
    """The section's Markdown: the change against the code before (when it ran), this tree's
    steps, the summary against the target, where the µs go, and how it was counted."""
    figures = [life_figures(run, tasks, cpu) for run, cpu in zip(runs, cpus, strict=True)]
    total = pooled(runs)
    head = ["step", "sent by", "calls/task", "server µs/call", "µs/task", "commands inside/call", "Lua's own µs/call",
            "costliest inside (per call; all repetitions)"]  # fmt: skip
    rows = [_step_row(step, figures, total) for step in STEPS]
    rows.append(["**task life, each µs once**", "", _col(figures, "scripts", 1) + " scripts", "",
                 "**" + _col(figures, "us_task") + "**", _col(figures, "commands", 1) + " commands/task", "",
                 ""])  # fmt: skip
    rows += [_step_row(step, figures, total, per_task=False) for step in BESIDE]
    summary = _summary(figures, called, sampled)
    top = _top_table(total, tasks * len(runs))
    change = _change_table(runs, cpus, tasks, figures, missing, commit)
    note = _note(tasks, len(runs), sampled, commit)
    return change + table(head, rows) + "\n" + summary + "\n" + top + note


def _change_table(
    runs: Sequence[Run], cpus: Sequence[Cpu], tasks: int, after: Sequence[Figures], missing: str, commit: str
) -> str:
    """Before (the code at `commit`, same run) and after (this tree), per script and for the
    whole life; a line saying why when the code before could not run."""
    if not all(BEFORE_TAG + step.key in run for run in runs for step in STEPS):
        return f"The code before ({commit}) was not measured: {missing or 'not run'}.\n\n"
    before = [life_figures(before_view(run), tasks, before_view(cpu)) for run, cpu in zip(runs, cpus, strict=True)]
    head = ["step", f"µs per call, before ({commit})", "after (this tree)", "commands inside per call, before",
            "after", "change of µs"]  # fmt: skip
    rows = []
    for step in STEPS:
        key = f"{step.key}:"
        inner = [_col(before, key + "inner_call", 1), _col(after, key + "inner_call", 1)] if step.script else ["", ""]
        rows.append([step.label, _col(before, key + "us_call"), _col(after, key + "us_call"), *inner,
                     _change(before, after, key + "us_call")])  # fmt: skip
    rows.append(["**task life** (µs per task; commands per task)", _col(before, "us_task"),
                 _col(after, "us_task"), _col(before, "commands", 1), _col(after, "commands", 1),
                 _change(before, after, "us_task")])  # fmt: skip
    rows.append([f"{REFERENCE_NAME} (µs per call, the same script)", _col(before, "ref_us"), _col(after, "ref_us"),
                 "18", "18", ""])  # fmt: skip
    rows.append(["**task life ÷ reference script**", f"**{_col(before, 'ratio')}×**", f"**{_col(after, 'ratio')}×**",
                 "", "", _change(before, after, "ratio")])  # fmt: skip
    return table(head, rows) + "\n"


def _change(before: Sequence[Figures], after: Sequence[Figures], key: str) -> str:
    """After ÷ before of the same repetition, as a change in % (the median of the repetitions)."""
    return f"{spread([100 * (a[key] / b[key] - 1) for a, b in zip(after, before, strict=True)])[0]:+.0f} %"


def _step_row(step: Step, figures: Sequence[Figures], total: Run, per_task: bool = True) -> list[str]:
    stats = total.get(step.key, {})
    calls = _total(script_calls(stats) if step.script else stats)[0]
    key = f"{step.key}:"
    besides = {c: v for c, v in stats.items() if c in step.beside}
    costliest = _busiest(inside(stats, step), calls) + (f"; beside: {_sent_list(besides)}" if besides else "")
    if not per_task:
        return [step.label, step.sender, "", _col(figures, key + "us_call"), "", _col(figures, key + "inner_call", 1),
                _col(figures, key + "lua_call"), costliest]  # fmt: skip
    return [step.label, step.sender, _col(figures, key + "calls", 2), _col(figures, key + "us_call"),
            _col(figures, key + "us_task"), _col(figures, key + "inner_call", 1) if step.script else "",
            _col(figures, key + "lua_call") if step.script else "",
            costliest if step.script else _sent_list(stats)]  # fmt: skip


def _sent_list(stats: Stats) -> str:
    """Each command a step sent outside scripts, with its µs per call."""
    return ", ".join(f"{c.upper()} {u / n:.1f} µs/call" for c, (n, u) in sorted(stats.items()))


def _summary(figures: Sequence[Figures], called: Counter[str], sampled: int) -> str:
    ratios = [f["ratio"] for f in figures]
    mid = spread(ratios)[0]
    scripts = ", ".join(f"{name} {n / sampled:.2f}" for name, n in sorted(called.items())) or "n/a"
    head = ["figure", "measured", "target (issue 19)", "verdict"]
    rows = [
        ["Redis µs per completed task (each µs once)", _col(figures, "us_task"), f"≈ {TARGET_US} µs on an idle machine",
         ""],
        [f"{REFERENCE_NAME}, µs per call", _col(figures, "ref_us"), "47–55 µs on a slow shared machine", ""],
        ["task life ÷ reference script", f"**{number(mid)}×** " + _range(ratios), f"≤ {TARGET}×",
         verdict(mid)],
        ["Redis CPU µs per task (its main thread: reading requests and writing replies included)",
         _col(figures, "cpu_task"), "", ""],
        ["… per reference call; task life ÷ reference by CPU", f"{_col(figures, 'ref_cpu')}; "
         f"{_col(figures, 'cpu_ratio')}×", "", ""],
        ["not the measure: every commandstats entry added up (µs inside scripts counted twice)",
         _col(figures, "us_twice") + " µs", "", ""],
        ["commands per task, inside scripts counted", _col(figures, "commands", 1), "", ""],
        ["Lua's µs per command a script calls, beyond the command's own (reference: its Lua less `return 1`'s, "
         "÷ its 18 commands)", _col(figures, "lua_per_command"), "", ""],
        ["scripts per task (SLOWLOG sample, by sha)", scripts, "", ""],
    ]  # fmt: skip
    return table(head, rows)


def _range(values: Sequence[float]) -> str:
    mid, low, high = spread(values)
    return "" if len(values) < 2 or math.isnan(mid) else f"[{number(low)}–{number(high)}]"


def _top_table(total: Run, tasks: int, count: int = 10) -> str:
    rows = contributors(total, tasks, step_figures(total.get(EMPTY.key, {}), EMPTY, 1)["us_call"])
    whole = sum(row[3] for row in rows)
    head = ["where a task's Redis µs go (all repetitions)", "command", "calls/task", "µs/task", "share"]
    body = [[step, command, number(calls, 2), number(us), f"{100 * us / whole:.0f} %" if whole else "n/a"]
            for step, command, calls, us in rows[:count]]  # fmt: skip
    return table(head, body)


def _note(tasks: int, reps: int, sampled: int, commit: str) -> str:
    return (
        f"\n{tasks:,} tasks per repetition ({reps} repetition(s)) through their whole life with the product's own "
        f"code in one process on the private redis-server, in blocks of {BLOCK}: each step on the whole block, "
        "`INFO commandstats` read between steps, so each step's commands are told apart. In the same blocks: as "
        f"many lives by the code before ({commit}: a `git worktree` of it, run by bench/cost_probe.py in a "
        "process of its own, under its own key prefix), and as many calls of the reference script (17 HINCRBY on "
        "one hash, a `cjson.encode`, one PUBLISH), of `return 1` and of claim_task's `_lib.lua` helpers alone, each "
        "call its own round trip as the product's are; the parts of a block in turn first. "
        "Each µs once: a task's Redis µs adds the usec of the commands clients sent (FCALL, or EVALSHA on Redis "
        "6.2; LPUSH, BRPOP); the commands a script runs are in its call's usec, so they count as commands, not again "
        "as µs ('commands inside'); 'Lua's own' is a script's usec beyond them: the call itself, (with EVALSHA) the "
        "`_lib.lua` helpers a script defines on every call, calling each command from Lua, "
        "cjson, the script's logic. Redis CPU: the CPU time of redis-server's main thread over the same steps "
        "(/proc/<pid>/schedstat), which adds reading requests and writing replies to the commands' µs. Left out: "
        "what is sent per interval, not per task (heartbeats, the worker's beat and its watch, the breaker's reads, "
        "an idle consumer's BLPOP on the wake-up marks and its empty claims, the consumer's LLEN of its in-flight "
        "list when the worker looks full), and what depends on clients (status reads, event subscribers: with "
        "none, PUBLISH is cheap). No API key (no owner, no submit rate limit); one consumer claiming new work; the "
        "BRPOP finds its message waiting (a worker blocked in it would be served by the LPUSH). Scripts per task: "
        f"a SLOWLOG sample of {sampled} tasks (every command logged, not timed). Server µs are wall-clock time "
        "inside Redis: on a shared machine a preempted Redis counts the wait, so compare the ratio, not the µs.\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Runs this section alone, with its own redis-server (no LLM stand-in), written as bench/run.py
    writes a run (its header, its results file)."""
    from bench import report, run  # here: bench.run imports this module

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repetition of 1,000 tasks")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per repetition (3,000; --quick 1,000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (3; --quick 1)")
    parser.add_argument(
        "--before", default=BEFORE_COMMIT, metavar="COMMIT", help="the code measured beside this tree in the same run"
    )
    args = parser.parse_args(argv)
    p = run.plan(args.quick, args.reps)
    tasks = args.tasks or p.cost_tasks
    given = sys.argv[1:] if argv is None else argv
    started, load_before = time.time(), os.getloadavg()
    env = Env(delays=())
    try:
        text, data = section(env, tasks, p.reps, run.log, args.before)
    finally:
        env.close()
    command = "python -m bench.redis_cost " + " ".join(given)
    header = report.header(command.strip(), p.reps, started, load_before, os.getloadavg(), platform.python_version())
    run.write(header + text, {"redis_cost": data}, started)


if __name__ == "__main__":
    main()
