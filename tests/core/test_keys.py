"""Key names: one module builds them all, under one optional prefix."""

from __future__ import annotations

import inspect
import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from core.keys import Keys
from core.states import State

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("core", "api", "worker", "consumer", "utils")
KEY_MODULE = ROOT / "core" / "keys.py"
# A quoted string (Python or Lua, f-string or not) whose text starts like one of our key names,
# or continues like one right after an f-string placeholder (`f"{prefix}task:{id}"`).
KEY_LITERAL = re.compile(
    r"""((?<![\w])[rbfRBF]{0,2}['"]|\})"""
    r"(task:|tasks:|dlq:|worker:heartbeat|worker:stats|workers:|queue-updates|stats:|idempotency:|scheduler:heartbeat"
    r"|owners:)"
)


def every_name(keys: Keys) -> dict[str, str]:
    """Every name `Keys` builds, found by introspection so a new key cannot escape these tests."""
    names: dict[str, str] = {}
    for attr, member in vars(Keys).items():
        if attr.startswith("_"):
            continue
        if isinstance(member, property):
            value = getattr(keys, attr)
            if isinstance(value, list):
                names.update({f"{attr}[{n}]": item for n, item in enumerate(value)})
            else:
                names[attr] = value
        elif inspect.isfunction(member):
            parameters = inspect.signature(member).parameters
            if "state" in parameters:
                names.update({f"{attr}({s.value})": member(keys, s) for s in State})
            elif "priority" in parameters:
                names[attr] = member(keys, "primary", 3, "alice")
            elif "day" in parameters:
                names[attr] = member(keys, 20790)
            else:
                names[attr] = member(keys, "some-id")
    return names


def test_introspection_finds_the_keys() -> None:
    names = every_name(Keys())
    for expected in ("task", "pending", "ready", "legacy_primary", "scheduled", "dlq", "inflight", "heartbeat"):
        assert expected in names
    assert len([n for n in names if n.startswith("state_index(")]) == len(State)


def test_default_names_keep_the_designs_spelling() -> None:
    k = Keys()
    assert k.task("42") == "task:42"
    assert (k.legacy_primary, k.legacy_retry) == ("tasks:pending:primary", "tasks:pending:retry")
    assert k.pending("primary", 3, "alice") == "tasks:pending:primary:3:alice"
    assert k.pending_prefix + "retry:5:" == k.pending("retry", 5, "")
    assert (k.ready("primary"), k.owners_held) == ("tasks:ready:primary", "owners:held")
    assert k.owner_tokens == "owners:tokens"
    assert (k.scheduled, k.dlq, k.events) == ("tasks:scheduled", "dlq:tasks", "queue-updates")
    assert k.heartbeat("w1") == "worker:heartbeat:w1"
    assert k.state_index(State.SCHEDULED) == k.scheduled and k.state_index(State.DLQ) == k.dlq
    assert k.history("42") == "task:42:history"
    assert (k.counters, k.durations) == ("stats:counters", "stats:durations:v2")
    assert k.scheduler_heartbeat == "scheduler:heartbeat"
    assert k.consumer_stats("w1") == "worker:stats:w1"


def test_idempotency_keys_are_hashed_so_any_header_value_is_safe() -> None:
    k = Keys("p:")
    name = k.idempotency("a key with spaces and ünïcode " * 20)
    assert name.startswith("p:idempotency:") and len(name) == len("p:idempotency:") + 64
    assert k.idempotency("a") != k.idempotency("b") and k.idempotency("a") == k.idempotency("a")


def test_state_indexes_are_distinct() -> None:
    k = Keys()
    indexes = [k.state_index(s) for s in State]
    assert len(set(indexes)) == len(State)
    assert k.all_tasks not in indexes and k.legacy_primary not in indexes


@pytest.mark.parametrize("prefix", ["t1234:", "prod:", "a:b:"])
def test_every_name_starts_with_the_prefix(prefix: str) -> None:
    plain, prefixed = every_name(Keys()), every_name(Keys(prefix))
    assert plain.keys() == prefixed.keys()
    for attr, name in prefixed.items():
        assert name == prefix + plain[attr], attr


def test_operator_patterns_cover_every_key_we_write() -> None:
    """The reset tool deletes what `all_patterns` matches; every stored key must be among it."""
    k = Keys("p:")
    skipped = {"events", "dispatch_queue", "pending_prefix"}
    # (a channel, a broker-db queue, fragments)
    skipped |= {n for n in every_name(k) if n.startswith("all_patterns")}
    for attr, name in every_name(k).items():
        if attr not in skipped:
            assert any(fnmatchcase(name, p) for p in k.all_patterns), f"{attr}: {name}"
    assert not any(fnmatchcase("other:task:1", p) for p in k.all_patterns)


def source_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in (".py", ".lua") and "__pycache__" not in path.parts and path != KEY_MODULE:
                files.append(path)
    return files


def test_the_scan_sees_the_code() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in source_files()}
    assert {"core/store.py", "core/scripts/claim_task.lua"} <= scanned
    assert "core/keys.py" not in scanned


def test_the_pattern_catches_key_literals() -> None:
    bad_ones = ['"task:1"', "f'tasks:inflight:{c}'", "'dlq:tasks'", '"worker:heartbeat:x"', "'queue-updates'"]
    bad_ones += ['f"{prefix}workers:registry"', "ARGV[1] .. 'task:'", '"stats:counters"', "'idempotency:x'"]
    for bad in bad_ones:
        assert KEY_LITERAL.search(f"x = {bad}"), bad
    for fine in ['"summarize task: ok"', "'subtask:1'", "# tasks: comment", '"a task:1"', 'f"{n} tasks: done"']:
        assert not KEY_LITERAL.search(f"x = {fine}"), fine


def test_no_other_file_spells_a_key() -> None:
    """Every key is built in core/keys.py; Lua scripts receive theirs through KEYS and ARGV."""
    offenders = []
    for path in source_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if KEY_LITERAL.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == [], "key names spelled outside core/keys.py:\n" + "\n".join(offenders)


def test_on_a_cluster_every_name_shares_one_hash_tag() -> None:
    """A script's keys must share one slot on a Redis Cluster: every name carries the tag once,
    after the prefix (so the reset tool's prefix patterns still match), and nothing else changes."""
    plain, tagged = every_name(Keys("p:")), every_name(Keys("p:", "atf"))
    assert plain.keys() == tagged.keys()
    for attr, name in tagged.items():
        if attr == "dispatch_queue":  # a Celery queue in the broker, never in the cluster
            assert name == plain[attr]
            continue
        assert name == "p:{atf}" + plain[attr].removeprefix("p:"), attr
        assert re.findall(r"\{[^}]*\}", name)[0] == "{atf}", attr
