"""Issue 19's bench section (bench/redis_cost.py): reading `INFO commandstats` and SLOWLOG, naming
scripts by sha, and the arithmetic that counts each µs once, on made-up counts. No timing is
asserted: the target lives in `make bench`."""

from __future__ import annotations

import hashlib
import math
import os

import pytest
import redis

from bench import run as bench_run
from bench.cost_probe import STEP_KEYS
from bench.redis_cost import (
    BEFORE_COMMIT,
    BEFORE_TAG,
    BESIDE,
    EMPTY,
    HARNESS,
    LUA_CALL,
    LUA_OWN,
    LUA_REST,
    PRELUDE,
    REF,
    REFERENCE,
    REFERENCE_NAME,
    STEPS,
    Run,
    add,
    before_view,
    beside_sources,
    contributors,
    cost_table,
    cpu_figures,
    delta,
    life_figures,
    main_thread_ns,
    parse_commandstats,
    parse_commandstats_text,
    pooled,
    script_names,
    scripts_called,
    step_figures,
    verdict,
)
from core.lua import helpers, names, source

TASKS = 10


def made_up_run() -> Run:
    """10 tasks: three scripts and a hand-off, one fold of their tally, plus 10 calls of each script
    timed beside them."""
    return {
        "create_task": {"evalsha": (10, 1000), "hset": (10, 100), "zadd": (30, 150)},
        "claim_task": {"evalsha": (10, 800), "hincrby": (70, 70), "lpop": (10, 30)},
        "handoff": {"lpush": (10, 30), "brpop": (10, 50)},
        "complete_task": {"evalsha": (10, 900), "hincrby": (130, 130), "publish": (10, 20)},
        "fold_tally": {"evalsha": (1, 20), "hincrby": (8, 8)},
        "reference": {"evalsha": (10, 400), "hincrby": (170, 100), "publish": (10, 5)},
        "empty": {"evalsha": (10, 30)},
        "prelude": {"evalsha": (10, 90)},
    }


# --- reading Redis ----------------------------------------------------------------------------------
def test_commandstats_are_read_from_redis_py_and_from_text() -> None:
    parsed = {
        "cmdstat_evalsha": {"calls": 3, "usec": 159, "usec_per_call": 53.0, "rejected_calls": 0, "failed_calls": 0},
        "cmdstat_config|resetstat": {"calls": 1, "usec": 49, "usec_per_call": 49.0},
        "cmdstat_HINCRBY": {"calls": "3", "usec": "8"},
        "used_memory": 1234,  # anything else INFO returns is not a command
    }
    assert parse_commandstats(parsed) == {"evalsha": (3, 159), "config|resetstat": (1, 49), "hincrby": (3, 8)}
    text = (
        "# Commandstats\r\n"
        "cmdstat_evalsha:calls=3,usec=159,usec_per_call=53.00,rejected_calls=0,failed_calls=0\r\n"
        "cmdstat_publish:calls=3,usec=3,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n"
    )
    assert parse_commandstats_text(text) == {"evalsha": (3, 159), "publish": (3, 3)}


def test_delta_keeps_what_changed_without_the_harness() -> None:
    before = {"evalsha": (3, 100), "hincrby": (10, 20), "info": (5, 200), "lpush": (1, 2)}
    after = {"evalsha": (5, 180), "hincrby": (10, 20), "info": (6, 250), "lpush": (2, 5), "zadd": (1, 3)}
    assert delta(before, after) == {"evalsha": (2, 80), "lpush": (1, 3), "zadd": (1, 3)}
    assert delta(before, after, ignore=()) == {"evalsha": (2, 80), "info": (1, 50), "lpush": (1, 3), "zadd": (1, 3)}
    assert {"info", "config|resetstat", "slowlog|get", "client|setinfo"} <= HARNESS


def test_add_and_pooled_sum_command_by_command() -> None:
    assert add({"a": (1, 10)}, {"a": (2, 5), "b": (1, 1)}) == {"a": (3, 15), "b": (1, 1)}
    one = made_up_run()
    both = pooled([one, one])
    assert both["create_task"]["zadd"] == (60, 300)
    assert both["handoff"] == {"lpush": (20, 60), "brpop": (20, 100)}
    assert one["create_task"]["zadd"] == (30, 150)  # the repetitions themselves are not changed


# --- naming scripts ---------------------------------------------------------------------------------
def test_script_names_are_the_shas_evalsha_uses() -> None:
    by_sha = script_names({REFERENCE_NAME: REFERENCE})
    assert set(by_sha.values()) == {*names(), REFERENCE_NAME}
    client = redis.Redis()  # no connection is made: redis-py hashes a script where it registers it
    for name in ("create_task", "claim_task", "complete_task"):
        assert by_sha[client.register_script(source(name)).sha] == name
    assert by_sha[hashlib.sha1(REFERENCE.encode()).hexdigest()] == REFERENCE_NAME


def test_scripts_called_names_each_evalsha_by_its_sha_and_skips_the_commands_inside() -> None:
    by_sha = script_names()
    claim, complete = (redis.Redis().register_script(source(n)).sha for n in ("claim_task", "complete_task"))
    entries = [
        [9, 0, 3, [b"EVALSHA", claim.encode(), b"15", b"k1"], b"127.0.0.1:5000", b""],
        [8, 0, 1, [b"HINCRBY", b"h", b"f", b"1"], b"?:0", b""],  # inside a script
        [7, 0, 3, ["EVALSHA", complete.upper(), "21"], "127.0.0.1:5001", ""],
        [6, 0, 3, ["evalsha", claim, "15"], "127.0.0.1:5000", ""],
        [5, 0, 3, ["EVALSHA", "f" * 40, "0"], "127.0.0.1:5000", ""],
        [4, 0, 3, ["EVAL", "local Q = queues(7, 6)... (1000 more bytes)", "15"], "127.0.0.1:5000", ""],
        [3, 0, 2, ["LPUSH", "queue", "message"], "127.0.0.1:5002", ""],
    ]
    found = scripts_called(entries, by_sha)
    assert found == {"claim_task": 2, "complete_task": 1, "sha ffffffff": 1, "EVAL (source sent)": 1}


def test_the_scripts_timed_beside_are_what_they_say() -> None:
    sources = beside_sources()
    assert set(sources) == {step.key for step in BESIDE} == {REF.key, EMPTY.key, PRELUDE.key}
    assert sources[REF.key].count("HINCRBY") == 1 and "for i = 1, 17 do" in sources[REF.key]
    assert "cjson.encode" in sources[REF.key] and sources[REF.key].count("PUBLISH") == 1
    assert sources[EMPTY.key] == "return 1"
    assert source("claim_task").startswith(helpers("claim_task"))  # what it runs first, on every call
    assert sources[PRELUDE.key] == helpers("claim_task") + "\nreturn 1"


def test_the_life_steps_are_the_probes() -> None:
    """The code before runs the same steps, by the same names, in bench/cost_probe.py."""
    assert tuple(step.key for step in STEPS) == STEP_KEYS


def test_the_code_before_is_read_from_its_tagged_steps() -> None:
    run = made_up_run()
    tagged = {BEFORE_TAG + key: stats for key, stats in run.items() if key in STEP_KEYS}
    both = {**tagged, **{key: stats for key, stats in run.items() if key not in STEP_KEYS}}
    assert before_view(both) == run
    assert before_view(run) == {step.key: run[step.key] for step in BESIDE}  # no steps before


def test_the_table_compares_with_the_code_before_when_it_ran() -> None:
    run = made_up_run()
    slower = {key: {c: (n, 2 * u) for c, (n, u) in stats.items()} for key, stats in run.items() if key in STEP_KEYS}
    both = run | {BEFORE_TAG + key: stats for key, stats in slower.items()}
    text = cost_table([both], [{}], TASKS, {}, 20)
    assert f"| step | µs per call, before ({BEFORE_COMMIT}) | after (this tree) |" in text
    assert "| create_task.lua | 200 | 100 | 4.0 | 4.0 | -50 % |" in text
    assert "| **task life ÷ reference script** | **14.0×** | **7.00×** |  |  | -50 % |" in text
    alone = cost_table([run], [{}], TASKS, {}, 20, missing="git worktree add failed")
    assert f"The code before ({BEFORE_COMMIT}) was not measured: git worktree add failed." in alone


# --- counting each µs once --------------------------------------------------------------------------
def test_a_script_step_counts_its_evalsha_once_and_its_commands_as_commands() -> None:
    create = next(step for step in STEPS if step.key == "create_task")
    figures = step_figures(made_up_run()["create_task"], create, TASKS)
    assert figures == {"calls": 1.0, "us_call": 100.0, "us_task": 100.0, "inner_call": 4.0, "lua_call": 75.0}
    handoff = next(step for step in STEPS if step.key == "handoff")
    figures = step_figures(made_up_run()["handoff"], handoff, TASKS)
    assert figures["calls"] == 2.0 and figures["us_task"] == 8.0 and figures["us_call"] == 4.0
    assert math.isnan(figures["lua_call"])


def test_life_figures_add_the_steps_and_compare_with_the_reference() -> None:
    figures = life_figures(made_up_run(), TASKS)
    # Each µs once: the EVALSHAs (100 + 80 + 90 + the fold's 2) and the hand-off's LPUSH and BRPOP (3 + 5).
    assert figures["us_task"] == pytest.approx(280.0)
    # Counted twice, as adding every entry would: + the commands inside (25 + 10 + 15 + 0.8).
    assert figures["us_twice"] == pytest.approx(330.8)
    # Commands per task, inside scripts counted: 1+1+3 + 1+7+1 + 1+1 + 1+13+1 + (1+8)/10.
    assert figures["commands"] == pytest.approx(31.9)
    assert figures["scripts"] == pytest.approx(3.1)
    assert figures["ref_us"] == pytest.approx(40.0)
    assert figures["ratio"] == pytest.approx(280.0 / 40.0)
    assert figures["reference:inner_call"] == pytest.approx(18.0)
    assert figures["prelude:us_call"] == pytest.approx(9.0) and figures["empty:us_call"] == pytest.approx(3.0)
    # The reference's Lua (40 - 10.5 µs of commands) less an empty script's (3), per command (18).
    assert figures["lua_per_command"] == pytest.approx((29.5 - 3.0) / 18)
    assert math.isnan(figures["cpu_task"])  # not measured


def test_cpu_figures_per_task_and_per_reference_call() -> None:
    cpu = {"create_task": 2_000_000, "claim_task": 1_500_000, "handoff": 500_000, "complete_task": 1_500_000}
    cpu["fold_tally"] = 500_000
    figures = cpu_figures({**cpu, "reference": 600_000}, tasks=10, ref_calls=10)
    assert figures == {"cpu_task": 600.0, "ref_cpu": 60.0, "cpu_ratio": 10.0}
    assert math.isnan(cpu_figures(cpu, tasks=10, ref_calls=10)["cpu_ratio"])


def test_contributors_add_up_to_the_task_and_come_largest_first() -> None:
    run = made_up_run()
    rows = contributors(run, TASKS)
    assert sum(us for *_, us in rows) == pytest.approx(life_figures(run, TASKS)["us_task"])
    assert [us for *_, us in rows] == sorted((us for *_, us in rows), reverse=True)
    assert rows[0] == ("create_task.lua", LUA_OWN, 1.0, 75.0)
    assert ("Celery hand-off", "BRPOP", 1.0, 5.0) in rows
    split = contributors(run, TASKS, call_us=9.0)
    assert sum(us for *_, us in split) == pytest.approx(280.0)
    assert ("claim_task.lua", LUA_CALL, 1.0, 9.0) in split and ("claim_task.lua", LUA_REST, 1.0, 61.0) in split
    assert all(what != LUA_OWN for _, what, _, _ in split)


def test_verdict_against_the_target() -> None:
    assert verdict(4.5) == "pass" and verdict(4.51) == "fail" and verdict(math.nan) == "n/a"


def test_the_table_shows_every_step_the_ratio_and_the_costliest() -> None:
    run = made_up_run()
    cpu = {key: 1_000_000 for key in run}
    text = cost_table([run], [cpu], TASKS, {"claim_task": 20, "create_task": 20}, 20)
    for label in ("create_task.lua", "claim_task.lua", "Celery hand-off", "complete_task.lua", REFERENCE_NAME):
        assert f"| {label} |" in text
    assert "**280**" in text and "**7.00×**" in text and "| fail |" in text
    assert "claim_task 1.00, create_task 1.00" in text
    assert "HINCRBY ×13 13.0 µs" in text  # complete_task's costliest command, per call of the script
    assert "BRPOP 5.0 µs/call, LPUSH 3.0 µs/call" in text
    # Redis CPU: 5 steps of 1 ms for 10 tasks; 1 ms for 10 reference calls.
    assert "| 500 |" in text and "| 100; 5.00× |" in text
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert all(line.count("|") == lines[0].count("|") for line in lines[: len(STEPS) + 2 + len(BESIDE)])


def test_main_thread_cpu_is_read_in_ns() -> None:
    read = main_thread_ns(os.getpid())
    if read is None:
        pytest.skip("no /proc/<pid>/schedstat here")
    first = read()
    sum(range(200_000))  # some CPU on this very thread
    assert read() > first > 0
    assert main_thread_ns(2**22 + 12345) is None  # no such process


def test_the_section_is_registered_with_its_task_counts() -> None:
    assert "redis_cost" in bench_run.ALL
    assert bench_run.plan(True, None).cost_tasks == 1000 and bench_run.plan(False, None).cost_tasks == 3000


def test_a_figure_the_same_in_every_repetition_shows_alone() -> None:
    run, other = made_up_run(), made_up_run()
    other["reference"] = {"evalsha": (10, 600), "hincrby": (170, 100), "publish": (10, 5)}
    text = cost_table([run, other], [{}, {}], TASKS, {}, 20)
    assert "| 50.0 [40.0–60.0] |" in text  # the reference's µs per call moved
    assert "| 1.00 | 100 | 100 | 4.0 | 75.0 |" in text  # create_task's did not
    assert "**5.83×** [4.67–7.00]" in text  # the median of the repetitions' ratios


def test_what_a_step_sends_beside_its_script_counts_once_as_its_own() -> None:
    """The claim reads the head of the list it names (LINDEX) before its script: that command's µs
    are the step's (not inside the script), and it is no script call."""
    claim = next(step for step in STEPS if step.key == "claim_task")
    run = made_up_run()
    run["claim_task"] = {**run["claim_task"], "lindex": (10, 20)}
    figures = step_figures(run["claim_task"], claim, TASKS)
    assert figures == {"calls": 1.0, "us_call": 80.0, "us_task": 82.0, "inner_call": 8.0, "lua_call": 70.0}
    assert life_figures(run, TASKS)["us_task"] == pytest.approx(282.0)
    rows = contributors(run, TASKS)
    assert ("claim_task.lua", "LINDEX", 1.0, 2.0) in rows
    assert sum(us for *_, us in rows) == pytest.approx(282.0)
