"""GET /metrics, parsed with prometheus_client's own parser, on the session's real Redis."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import TASK_EVENTS, TOKEN_COUNTERS, TYPE_EVENTS
from core.states import State
from core.store import TaskStore
from tests.api.conftest import Pipeline, submit

pytestmark = pytest.mark.anyio
SCRIPTS = Path(__file__).resolve().parents[2] / "core" / "scripts"


def depth(queue: str, priority: str = "") -> tuple[str, tuple[tuple[str, str], ...]]:
    """The key of one `atf_queue_depth` sample in `samples`: the pending lists per level, the
    sorted sets with `priority=""`."""
    return ("atf_queue_depth", (("priority", priority), ("queue", queue)))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_parse_and_match_the_pipeline(
    client: httpx.AsyncClient, pipeline: Pipeline, sync_store: TaskStore
) -> None:
    ids = [await submit(client, f"text {i}") for i in range(5)]
    pipeline.complete(ids[0])
    pipeline.complete(ids[1])
    pipeline.fail(ids[2], State.DLQ)
    pipeline.schedule(ids[3])
    sync_store.beat("consumer-1", {"pid": 1, "beat_at": int(time.time() * 1000)}, ttl=30)

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert got[depth("primary", "5")] == 1
    assert got[depth("scheduled")] == 1
    assert got[depth("dlq")] == 1
    assert got[("atf_tasks", (("state", "COMPLETED"),))] == 2
    for event, value in (("submitted", 5), ("completed", 2), ("dead", 1), ("retried", 1), ("started", 4)):
        assert got[("atf_task_events_total", (("event", event),))] == value, event
    assert got[("atf_task_duration_seconds_count", ())] == 2
    assert got[("atf_task_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert got[("atf_task_duration_seconds_bucket", (("le", "0.1"),))] == 2
    assert got[("atf_task_duration_seconds_sum", ())] >= 0
    assert got[("atf_circuit_breaker_state", (("state", "closed"),))] == 1
    assert got[("atf_circuit_breaker_state", (("state", "open"),))] == 0
    assert got[("atf_workers_alive", ())] == 1
    assert got[("atf_scheduler_alive", ())] == 0
    assert got[("atf_retry_ratio", ())] == pytest.approx(0.3)


async def test_metrics_of_an_empty_system_still_parse(client: httpx.AsyncClient) -> None:
    got = samples((await client.get("/metrics")).text)
    assert got[("atf_task_duration_seconds_count", ())] == 0
    levels = {dict(labels)["priority"] for (name, labels) in got if name == "atf_queue_depth"}
    assert levels == {str(p) for p in range(10)} | {""}
    for queue in ("primary", "retry"):
        assert [got[depth(queue, str(p))] for p in range(10)] == [0] * 10, "every level from the start, at 0"
    assert got[depth("scheduled")] == got[depth("dlq")] == 0
    events = {dict(labels)["event"]: v for (name, labels), v in got.items() if name == "atf_task_events_total"}
    assert events == dict.fromkeys(TASK_EVENTS, 0), "every event series exists from the start, at 0"
    assert got[("atf_llm_tokens_total", (("kind", "prompt"),))] == 0
    assert got[("atf_llm_tokens_total", (("kind", "completion"),))] == 0


async def test_queue_depth_is_per_priority_level_for_the_pending_lists(
    client: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    for priority in (0, 0, 3, 9):
        response = await client.post("/api/v1/tasks/summarize/", json={"content": "text", "priority": priority})
        assert response.status_code == 202, response.text
    retried = await submit(client, "to retry")  # the default level, 5
    await client.post(f"/api/v1/tasks/{retried}/cancel")
    await client.post(f"/api/v1/tasks/{retried}/retry")  # CANCELLED → PENDING, on the retry side

    got = samples((await client.get("/metrics")).text)

    primary = {p: got[depth("primary", str(p))] for p in range(10)}
    assert primary == {0: 2, 1: 0, 2: 0, 3: 1, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 1}
    assert [got[depth("retry", str(p))] for p in range(10)] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert {depth("primary"), depth("scheduled", "5")} & got.keys() == set(), "no level-less list, no levelled set"


async def test_tokens_have_their_own_counter_not_the_events_one(
    client: httpx.AsyncClient, pipeline: Pipeline, sync_store: TaskStore
) -> None:
    task_id = await submit(client, "text")
    pipeline.claim(task_id)
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    sync_store.complete(task_id, pipeline.consumer_id, pipeline.tokens[task_id], "sum", "openrouter", "m", usage)

    got = samples((await client.get("/metrics")).text)
    assert got[("atf_llm_tokens_total", (("kind", "prompt"),))] == 120
    assert got[("atf_llm_tokens_total", (("kind", "completion"),))] == 30
    events = {dict(labels)["event"] for (name, labels) in got if name == "atf_task_events_total"}
    assert events == set(TASK_EVENTS), "no token figure among the events"


def counters_named(lua: str) -> set[str]:
    """The counter names a script's text moves: each `count(KEYS[n], '…')`, each name given to a
    `counter` it then counts, and HINCRBY on the counters (names built at run time appear as their
    prefix, e.g. `taken_`; the histogram's `sum` is no counter)."""
    moved = set(re.findall(r"count\(KEYS\[\d+\], '([a-z_]+)'", lua))
    moved |= set(re.findall(r"counter = (?:[^'\n]*?and )?'([a-z_]+)'", lua))
    moved |= set(re.findall(r"or '([a-z_]+)'", lua))  # `spent == 1 and 'retried' or 'postponed'`
    moved |= set(re.findall(r"lost\('[A-Z]+', '([a-z_]+)'\)", lua))  # recover_task's two endings
    not_counters = {"retry_count", "attempts", "rate_limits", "sum"}
    moved |= set(re.findall(r"HINCRBY', KEYS\[\d+\], '([a-z_]+)'", lua)) - not_counters
    return moved


def test_the_event_list_names_every_counter_the_scripts_move() -> None:
    """TASK_EVENTS is what the scripts count: each `counter = '…'` and HINCRBY on the counters."""
    moved = counters_named("\n".join(p.read_text() for p in SCRIPTS.glob("*.lua")))
    # Names built at run time: by the list a claim took from, by the state an operator retried from.
    built = {"taken_": ("primary", "retry"), "requeued_": ("failed", "cancelled")}
    for prefix, endings in built.items():
        assert prefix in moved, f"{prefix}… is no longer built in a script: update this test"
        moved = (moved - {prefix}) | {prefix + ending for ending in endings}
    assert moved - set(TOKEN_COUNTERS) == set(TASK_EVENTS)


def test_the_type_event_list_names_every_counter_moved_per_type() -> None:
    """TYPE_EVENTS is what the scripts that count per type (`count_type`) count (each such counter
    also moves per type there); the tokens are counted beside it, not per type."""
    per_type = {p.stem: p.read_text() for p in SCRIPTS.glob("*.lua") if "count_type(KEYS[" in p.read_text()}
    # fold_tally counts the completions complete_task wrote into the tally.
    assert set(per_type) == {"create_task", "fold_tally", "fail_task", "schedule_retry", "recover_task"}
    named: set[str] = set()
    for lua in per_type.values():
        named |= set(re.findall(r"count_type\(KEYS\[\d+\], [^,]+, '([a-z_]+)'", lua))
        if re.search(r"count_type\(KEYS\[\d+\], [^,]+, counter\)", lua):
            named |= counters_named(lua)
    assert named - set(TOKEN_COUNTERS) == set(TYPE_EVENTS)


async def test_promtool_finds_nothing_to_fix(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    """`promtool check metrics`, Prometheus' own linter (Debian's `prometheus` package has it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    pipeline.complete(await submit(client, "text"))
    text = (await client.get("/metrics")).text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
