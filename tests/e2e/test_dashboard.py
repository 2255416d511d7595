"""The dashboard in Chromium against the real stack: each page does what an operator needs, with
every figure and action going through the real API, Redis and workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PHONE, screenshot
from tests.integration.stack import Stack, wait_until

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

pytestmark = pytest.mark.e2e

Open = Callable[..., Any]


def test_submit_through_the_ui_completes_with_the_summary(open_page: Open, stack: Stack) -> None:
    page = open_page("/submit")
    expect(page.get_by_test_id("connection")).to_have_text("Live")
    page.get_by_label("Text to summarize").fill("Redis keeps the queue. Celery runs the work. [[tag:from-the-ui]]")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_test_id("watch-state")).to_contain_text("COMPLETED", timeout=30_000)
    expect(page.get_by_test_id("summary")).to_have_text("summary:from-the-ui")
    # The timeline shows the states the task went through, as the API recorded them.
    timeline = page.get_by_role("list", name="States so far")
    expect(timeline).to_contain_text("PENDING")
    expect(timeline).to_contain_text("ACTIVE")
    expect(timeline).to_contain_text("COMPLETED")
    screenshot(page, "submit", full_page=True)  # the type list pushes the result below the fold


def test_a_dropped_or_chosen_txt_file_becomes_the_text(open_page: Open, stack: Stack, tmp_path: Path) -> None:
    page = open_page("/submit")
    text = page.get_by_label("Text to summarize")
    dropped = page.evaluate_handle(
        """() => { const dt = new DataTransfer();
                   dt.items.add(new File(['Dropped text. [[tag:dropped]]'], 'notes.txt', {type: 'text/plain'}));
                   return dt; }"""
    )
    page.dispatch_event(".dropzone", "drop", {"dataTransfer": dropped})
    expect(text).to_have_value("Dropped text. [[tag:dropped]]")
    chosen = tmp_path / "chosen.txt"
    chosen.write_text("Chosen text. [[tag:chosen]]")
    page.get_by_label("…or choose a file:").set_input_files(chosen)
    expect(text).to_have_value("Chosen text. [[tag:chosen]]")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_test_id("summary")).to_have_text("summary:chosen", timeout=30_000)


def test_a_dlq_task_requeued_from_the_ui_completes(open_page: Open, stack: Stack) -> None:
    # Four failing calls spend the first attempt and MAX_RETRIES=3 retries: the task dies; the fifth call succeeds.
    task_id = stack.submit("Fails four times, then works. [[fail:4]] [[tag:revived]]")
    wait_until(lambda: stack.task(task_id)["state"] == "DLQ", 60, what="the task to reach the DLQ")
    page = open_page("/dlq")
    row = page.locator(f"tr[data-task-id='{task_id}']")
    expect(row).to_contain_text("500")  # the last error is shown
    screenshot(page, "dlq")
    row.get_by_role("checkbox").check()
    page.get_by_role("button", name="Requeue selected (1)").click()
    expect(page.get_by_role("status").filter(has_text="Requeued 1 task")).to_be_visible()
    expect(row).to_have_count(0)
    wait_until(lambda: stack.task(task_id)["state"] == "COMPLETED", 30, what="the requeued task to complete")
    assert stack.task(task_id)["result"] == "summary:revived"


def test_purge_asks_for_confirmation(open_page: Open, stack: Stack) -> None:
    task_id = stack.submit("Always refused by the provider. [[status:500]]")
    wait_until(lambda: stack.task(task_id)["state"] == "DLQ", 60, what="the task to reach the DLQ")
    page = open_page("/dlq")
    expect(page.locator(f"tr[data-task-id='{task_id}']")).to_have_count(1)
    page.get_by_role("button", name="Purge all…").click()
    dialog = page.get_by_role("dialog", name="Purge the DLQ?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    assert stack.http.get(f"/api/v1/tasks/{task_id}").status_code == 200  # cancelled: nothing deleted
    page.get_by_role("button", name="Purge all…").click()
    dialog.get_by_role("button", name="Purge every dead task").click()
    expect(page.get_by_role("status").filter(has_text="Purged")).to_be_visible()
    assert stack.http.get(f"/api/v1/tasks/{task_id}").status_code == 404


def test_the_breaker_reset_button_closes_an_open_breaker(open_page: Open, stack: Stack) -> None:
    assert stack.http.post("/health/workers/open-circuit-breaker").json()["state"] == "open"
    try:
        page = open_page("/")
        expect(page.get_by_test_id("breaker-state")).to_have_text("open")
        screenshot(page, "dashboard-breaker-open")
        page.get_by_role("button", name="Reset breaker").click()
        expect(page.get_by_test_id("breaker-state")).to_have_text("closed")
        assert stack.http.get("/health/workers/circuit-breaker").json()["state"] == "closed"
    finally:
        stack.http.post("/health/workers/reset-circuit-breaker")


def test_the_flow_diagram_counts_live_and_its_nodes_open_the_task_list(open_page: Open, stack: Stack) -> None:
    finished = sum(b["completed"] for b in stack.http.get("/api/v1/queues/throughput").json()["minutes"][-15:])
    page = open_page("/")
    expect(page.get_by_test_id("connection")).to_have_text("Live")
    completed = page.locator("[data-node='completed'] .node-count")
    submitted = page.locator("[data-edge='submit>primary'] .edge-count")
    for figure in (completed, submitted, page.locator("[data-node='submit'] .node-count")):
        expect(figure).not_to_have_text("…")  # the snapshot and the counters have arrived
    taken = page.locator("[data-edge='primary>active'] .edge-count")
    expect(taken).not_to_have_text("…")
    before_completed, before_submitted = int(completed.text_content() or ""), int(submitted.text_content() or "")
    before_taken = int(taken.text_content() or "")
    ids = [stack.submit(f"Live count {i}. [[tag:n{i}]]") for i in range(3)]
    stack.wait_terminal(ids, 30)
    # Without reloading: the stream's events moved the figures. The stack is idle, so its consumer
    # took these three when its blocking wait woke: they count on Primary → Active too.
    expect(completed).to_have_text(str(before_completed + 3))
    expect(submitted).to_have_text(str(before_submitted + 3))
    expect(taken).to_have_text(str(before_taken + 3))
    expect(page.get_by_test_id("throughput-summary")).to_contain_text(f"last 15 min: {finished + 3} completed")
    expect(page.get_by_test_id("provider")).not_to_contain_text("none yet")  # the last success is read again
    expect(page.get_by_test_id("taken")).not_to_have_text("0 / 0")
    screenshot(page, "dashboard", full_page=True)
    page.locator("[data-node='completed']").click()
    expect(page).to_have_url(f"{page.url.split('/tasks')[0].rstrip('/')}/tasks?state=COMPLETED")
    expect(page.get_by_label("State")).to_have_value("COMPLETED")
    for task_id in ids:
        expect(page.locator(f"tr[data-task-id='{task_id}']")).to_have_count(1)


def test_the_throughput_chart_starts_from_what_finished_before_the_page_opened(open_page: Open, stack: Stack) -> None:
    ids = [stack.submit(f"Finished before the page opened {i}. [[tag:b{i}]]") for i in range(4)]
    stack.wait_terminal(ids, 30)
    rings = stack.http.get("/api/v1/queues/throughput").json()
    finished = sum(b["completed"] for b in rings["minutes"][-15:])  # the stack is younger than 15 min
    assert finished >= 4
    page = open_page("/")
    expect(page.get_by_test_id("connection")).to_have_text("Live")
    summary = page.get_by_test_id("throughput-summary")
    expect(summary).to_contain_text(f"last 15 min: {finished} completed")
    # Then the live transitions add to it.
    stack.wait_terminal([stack.submit(f"Finished while it is open {i}. [[tag:a{i}]]") for i in range(2)], 30)
    expect(summary).to_contain_text(f"last 15 min: {finished + 2} completed")


def test_each_edge_counts_its_own_transition_and_the_workers_table_agrees(open_page: Open, stack: Stack) -> None:
    page = open_page("/")
    expect(page.get_by_test_id("connection")).to_have_text("Live")

    def edge(name: str) -> Any:
        figure = page.locator(f"[data-edge='{name}'] .edge-count")
        expect(figure).not_to_have_text("…")
        return figure

    from_dlq, from_retry = edge("dlq>retry"), edge("retry>active")
    before_dlq, before_retry = int(from_dlq.text_content() or ""), int(from_retry.text_content() or "")
    # A task cancelled while it runs, then retried by an operator: CANCELLED → the retry list,
    # which is no DLQ → Retry; its second run is taken from the retry list.
    task_id = stack.submit("Cancelled, then retried. [[delay:3]] [[tag:un-cancelled]]")
    wait_until(lambda: stack.task(task_id)["state"] == "ACTIVE", 20, what="the task to run")
    assert stack.http.post(f"/api/v1/tasks/{task_id}/cancel").json()["state"] == "CANCELLED"
    assert stack.http.post(f"/api/v1/tasks/{task_id}/retry").status_code == 202
    wait_until(lambda: stack.task(task_id)["state"] == "COMPLETED", 30, what="the retried task to complete")
    expect(from_retry).to_have_text(str(before_retry + 1))
    expect(from_dlq).to_have_text(str(before_dlq))
    # The workers table (one consumer here) shows what its claims counted, the same figures.
    primary = int(edge("primary>active").text_content() or "")
    expect(page.get_by_test_id("taken")).to_have_text(f"{primary} / {before_retry + 1}")


def test_task_detail_shows_the_task_and_offers_only_what_its_state_allows(open_page: Open, stack: Stack) -> None:
    task_id = stack.submit("A detail view test. [[fail:1]] [[tag:detail]]")
    wait_until(lambda: stack.task(task_id)["state"] == "COMPLETED", 30, what="completion")
    page = open_page("/tasks")
    page.get_by_label("Task id").fill(task_id)
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_test_id("summary")).to_have_text("summary:detail")
    expect(page.get_by_role("table", name="State history")).to_contain_text("SCHEDULED")
    expect(page.get_by_role("heading", name="Errors (1)")).to_be_visible()
    expect(page.locator("pre.content")).to_contain_text("A detail view test.")
    screenshot(page, "task-detail")
    # A COMPLETED task can be deleted, not retried or cancelled (the API would answer 409).
    actions = page.get_by_test_id("task-actions").get_by_role("button")
    expect(actions).to_have_text(["Delete"])
    assert stack.http.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 409
    assert stack.http.post(f"/api/v1/tasks/{task_id}/retry").status_code == 409
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{page.url.split('/tasks')[0]}/tasks")
    assert stack.http.get(f"/api/v1/tasks/{task_id}").status_code == 404


def test_a_dead_task_offers_retry_and_the_retry_completes_it(open_page: Open, stack: Stack) -> None:
    task_id = stack.submit("Fails four times, then works. [[fail:4]] [[tag:detail-retry]]")
    wait_until(lambda: stack.task(task_id)["state"] == "DLQ", 60, what="the task to reach the DLQ")
    page = open_page(f"/tasks/{task_id}")
    actions = page.get_by_test_id("task-actions").get_by_role("button")
    expect(actions).to_have_text(["Retry", "Delete"])
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_test_id("summary")).to_have_text("summary:detail-retry", timeout=30_000)
    expect(actions).to_have_text(["Delete"])


def test_tasks_page_filters_and_paginates(open_page: Open, stack: Stack) -> None:
    ids = [stack.submit(f"Page me {i}. [[tag:p{i}]]") for i in range(25)]
    stack.wait_terminal(ids, 60)
    first = stack.http.get("/api/v1/tasks/?status=COMPLETED&limit=20").json()
    second = stack.http.get(f"/api/v1/tasks/?status=COMPLETED&limit=20&cursor={first['next_cursor']}").json()
    page = open_page("/tasks?state=COMPLETED")
    rows = page.locator("table.tasks tbody tr")

    def shown(count: int = 20) -> list[str]:
        expect(rows).to_have_count(count)
        return [str(row.get_attribute("data-task-id")) for row in rows.all()]

    assert shown() == [t["task_id"] for t in first["items"]]  # the API's order: newest first
    screenshot(page, "tasks")
    page.get_by_role("button", name="Older →").click()
    expect(rows.first).to_have_attribute("data-task-id", second["items"][0]["task_id"])
    assert shown(len(second["items"])) == [t["task_id"] for t in second["items"]]
    page.get_by_role("button", name="← Newer").click()
    expect(rows.first).to_have_attribute("data-task-id", first["items"][0]["task_id"])
    page.get_by_label("State").select_option("FAILED")
    expect(page).to_have_url(f"{page.url.split('/tasks')[0]}/tasks?state=FAILED")


def test_keyboard_navigation_reaches_every_page(open_page: Open) -> None:
    page = open_page("/")
    for name, heading in (("Tasks", "Tasks"), ("DLQ", "Dead-letter queue"), ("Submit", "Submit a task")):
        page.get_by_role("link", name=name, exact=True).focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    # A node of the flow diagram is a link too.
    page.get_by_role("link", name="Dashboard", exact=True).focus()
    page.keyboard.press("Enter")
    page.locator("[data-node='dlq']").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("State")).to_have_value("DLQ")
    # On a fresh load, Tab reaches the skip link first, then the brand and the navigation.
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    focused = []
    for _ in range(4):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent"))
    assert focused == ["Skip to content", "AsyncTaskFlow", "Dashboard", "Tasks"]
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Tasks")


@pytest.mark.parametrize("path", ["/", "/tasks", "/dlq", "/submit"])
def test_pages_fit_a_phone_screen(open_page: Open, path: str) -> None:
    page = open_page(path, viewport=PHONE)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    # Nothing wider than the screen except inside the scrollable diagram and tables.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    if path == "/":
        expect(page.get_by_test_id("connection")).to_have_text("Live")
        expect(page.get_by_test_id("depth-primary")).not_to_contain_text("…")
        screenshot(page, "dashboard-phone")
