"""The connection indicator against a stack whose API is stopped and started again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, Dashboard, _make_stack, screenshot
from tests.integration.stack import Stack
from tests.stub_llm import StubLLM

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_stack(redis_url: str, llm: StubLLM, tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own: this test stops its API."""
    running = _make_stack(redis_url, llm, tmp_path)
    yield running
    running.stop()


def test_the_indicator_shows_a_stopped_api_and_recovers(
    browser: Any, own_stack: Stack, dist: Path, tmp_path: Path
) -> None:
    server = Dashboard(own_stack, dist, tmp_path)
    context = browser.new_context(viewport=DESKTOP, base_url=server.url)
    try:
        page = context.new_page()
        page.goto("/")
        indicator = page.get_by_test_id("connection")
        expect(indicator).to_have_text("Live", timeout=15_000)
        own_stack.kill("api")
        expect(indicator).to_contain_text("API unreachable", timeout=15_000)
        screenshot(page, "api-down")
        own_stack.start("api")
        # Reconnected by itself: no reload, no click.
        expect(indicator).to_have_text("Live", timeout=20_000)
        task_id = own_stack.submit("After the restart. [[tag:back]]")
        expect(page.locator("[data-node='completed'] .node-count")).not_to_have_text("…")
        own_stack.wait_terminal([task_id], 30)
    finally:
        context.close()
        server.stop()
