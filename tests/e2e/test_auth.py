"""The dashboard against an API that requires a key: it asks for one, then sends it everywhere
(the live stream included, which EventSource could not do)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.auth import new_key
from tests.e2e.conftest import DESKTOP, Dashboard
from tests.integration.stack import Stack
from tests.stub_llm import StubLLM

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

pytestmark = pytest.mark.e2e

KEY, ENTRY = new_key("operator", "admin")


@pytest.fixture
def keyed_stack(redis_url: str, llm: StubLLM, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(redis_url, llm.url, tmp_path, API_KEYS=ENTRY).start_all()
    yield running
    running.stop()


def test_the_dashboard_asks_for_the_key_and_then_works(
    browser: Any, keyed_stack: Stack, dist: Path, tmp_path: Path
) -> None:
    assert keyed_stack.http.get("/api/v1/queues/status").status_code == 401
    server = Dashboard(keyed_stack, dist, tmp_path)
    context = browser.new_context(viewport=DESKTOP, base_url=server.url)
    try:
        page = context.new_page()
        page.goto("/")
        expect(page.get_by_role("alert").filter(has_text="requires a key")).to_be_visible(timeout=15_000)
        expect(page.get_by_test_id("connection")).to_have_text("API key required")
        page.get_by_label("API key", exact=True).fill(KEY)
        page.get_by_role("button", name="Save key").click()
        expect(page.get_by_test_id("connection")).to_have_text("Live", timeout=15_000)
        expect(page.locator("[data-node='completed'] .node-count")).not_to_have_text("…")
        # The key is sent on the submit too; the task's live progress arrives over the keyed stream.
        page.get_by_role("link", name="Submit", exact=True).click()
        page.get_by_label("Text to summarize").fill("Behind a key. [[tag:keyed]]")
        page.get_by_role("button", name="Submit").click()
        expect(page.get_by_test_id("summary")).to_have_text("summary:keyed", timeout=30_000)
    finally:
        context.close()
        server.stop()
