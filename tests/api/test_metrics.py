"""GET /metrics, parsed with prometheus_client's own parser, on the session's real Redis."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.states import State
from core.store import TaskStore
from tests.api.conftest import Pipeline, submit

pytestmark = pytest.mark.anyio


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
    assert got[("atf_queue_depth", (("queue", "primary"),))] == 1
    assert got[("atf_queue_depth", (("queue", "scheduled"),))] == 1
    assert got[("atf_queue_depth", (("queue", "dlq"),))] == 1
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
    assert got[("atf_queue_depth", (("queue", "retry"),))] == 0
    assert not [k for k in got if k[0] == "atf_task_events_total"]
