"""Priorities on the dashboard (issue 18), in Chromium against the real stack: pending work per
level and the owners holding it, the Priority control of the Submit page, the task list's
priority column and filter. The stack runs without API keys, so every task is the one owner's
("(no key)")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.states import State
from tests.e2e.test_task_types import submitted_id
from tests.integration.stack import Stack

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

pytestmark = pytest.mark.e2e

Open = Callable[..., Any]


def _submit(stack: Stack, priority: int, tag: str) -> str:
    body = {"content": f"Waiting at level {priority}. [[tag:{tag}]]", "priority": priority}
    response = stack.http.post("/api/v1/tasks/summarize/", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def test_pending_work_shows_per_level_and_owner_and_the_ui_submits_and_filters_by_priority(
    open_page: Open, stack: Stack
) -> None:
    # While the breaker is open no consumer takes work: the tasks wait where the dashboard shows them.
    assert stack.http.post("/health/workers/open-circuit-breaker").json()["state"] == "open"
    ids: list[str] = []
    try:
        ids += [_submit(stack, 2, "p2"), _submit(stack, 7, "p7a"), _submit(stack, 7, "p7b")]
        page = open_page("/")
        levels = page.get_by_role("table", name="Pending by priority")
        expect(levels.locator("tr[data-priority='2'] td[data-testid='priority-primary']")).to_have_text("1")
        expect(levels.locator("tr[data-priority='7'] td[data-testid='priority-primary']")).to_have_text("2")
        expect(levels.locator("tr[data-priority='5']")).to_have_count(0)
        owners = page.get_by_role("table", name="Top owners by backlog")
        expect(owners.locator("tr[data-owner='']")).to_contain_text("(no key)")
        expect(owners.locator("tr[data-owner='']")).to_contain_text("3")

        page = open_page("/submit")
        page.get_by_label("Text to summarize").fill("Sent at level 0 from the form. [[tag:p0]]")
        page.get_by_label("Priority").select_option("0")
        page.get_by_role("button", name="Submit").click()
        ids.append(submitted_id(page))
        assert stack.task(ids[-1])["priority"] == 0

        page = open_page("/tasks?state=PENDING&priority=7")
        expect(page.get_by_label("Priority", exact=True)).to_have_value("7")
        for task_id in ids[1:3]:
            expect(page.locator(f"tr[data-task-id='{task_id}'] td[data-testid='task-priority']")).to_contain_text("7")
        expect(page.locator(f"tr[data-task-id='{ids[0]}']")).to_have_count(0)
    finally:
        stack.http.post("/health/workers/reset-circuit-breaker")
    assert set(stack.wait_terminal(ids, timeout=60).values()) == {State.COMPLETED}
    first = min(ids, key=lambda task_id: (stack.store.get(task_id).started_at, task_id != ids[-1]))
    assert first == ids[-1], "level 0 ran first once the breaker closed"
