"""Issue 21, 4: logs without noise. A bulk submit is one INFO line (each id at DEBUG), and a purge
that found nothing is no WARNING."""

from __future__ import annotations

import logging

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_a_bulk_submit_is_one_info_line(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="api.routes.tasks")
    items = [{"content": f"document {i}. It has two sentences."} for i in range(20)]
    response = await client.post("/api/v1/tasks/summarize/bulk", json={"items": items})
    assert response.status_code == 202, response.text
    ids = [item["task_id"] for item in response.json()["items"]]

    mine = [r for r in caplog.records if r.name == "api.routes.tasks"]
    info = [r.getMessage() for r in mine if r.levelno == logging.INFO]
    assert len(info) == 1 and info[0].startswith("20 tasks submitted in bulk") and ids[0] in info[0]
    debug = " ".join(r.getMessage() for r in mine if r.levelno == logging.DEBUG)
    assert all(task_id in debug for task_id in ids), "each id is still logged, at DEBUG"


async def test_a_single_submit_names_its_task(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="api.routes.tasks")
    task_id = (await client.post("/api/v1/tasks/summarize/", json={"content": "One. Two."})).json()["task_id"]
    assert [r.getMessage() for r in caplog.records if r.name == "api.routes.tasks"] == [
        f"task {task_id} submitted (summarize, 9 chars)"
    ]


async def test_purging_an_empty_dlq_is_no_warning(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="api.routes.queues")
    assert (await client.delete("/api/v1/queues/dlq")).json() == {"deleted": 0}
    purged = [r for r in caplog.records if "dead tasks purged" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in purged] == [(logging.INFO, "0 dead tasks purged")]
