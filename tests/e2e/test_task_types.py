"""The Submit page's forms, built from each task type's input schema, in Chromium against the real
stack (its LLM the loopback stand-in, with a key: every type can run), and against an API whose
offline provider runs (the types that need an LLM are offered disabled, with the reason).

The type filter of the task list is left to the component tests until the API's `task_type`
filter is merged."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DESKTOP, Dashboard
from tests.integration.stack import ROOT, Stack
from tests.stub_llm import StubLLM

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

pytestmark = pytest.mark.e2e

Open = Callable[..., Any]
FIXTURE = ROOT / "frontend" / "src" / "fixtures" / "task-types.offline.json"
NEEDS_AN_LLM = ("translate", "extract", "chat")
WATCHED = re.compile(r"^Task ")  # the heading of the task the Submit page watches: "Task <id>"


def submitted_id(page: Any) -> str:
    """The id of the task the Submit page now watches (its heading links to the task)."""
    link = page.get_by_role("heading", name=WATCHED).get_by_role("link")
    expect(link).to_be_visible()
    return str(link.text_content())


def test_a_summarize_submitted_through_the_form_completes(open_page: Open, stack: Stack) -> None:
    page = open_page("/submit")
    # With a provider configured, every type can run, and summarize is offered first.
    expect(page.get_by_role("radio", name="summarize")).to_be_checked()
    for name in NEEDS_AN_LLM:
        expect(page.get_by_role("radio", name=name)).to_be_enabled()
    page.get_by_label("Text to summarize").fill("The form sends the text. [[tag:typed-form]]")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_test_id("watch-state")).to_contain_text("COMPLETED", timeout=30_000)
    expect(page.get_by_test_id("summary")).to_have_text("summary:typed-form")
    task = stack.task(submitted_id(page))
    assert (task["task_type"], task["params"]) == ("summarize", None)
    assert task["content"] == "The form sends the text. [[tag:typed-form]]"


def test_an_extract_submitted_through_the_form_shows_its_json_result_indented(open_page: Open, stack: Stack) -> None:
    wanted = {"name": "Ada Lovelace", "born": 1815}
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
              "required": ["name", "born"]}  # fmt: skip
    page = open_page("/submit")
    page.get_by_role("radio", name="extract").check()
    expect(page).to_have_url(f"{page.url.split('/submit')[0]}/submit?type=extract")
    text = f"Ada Lovelace was born in 1815. [[answer:{json.dumps(wanted)}]]"
    page.get_by_label("Text to extract").fill(text)
    field = page.get_by_role("textbox", name="Schema — JSON")
    example = {"properties": {"name": {"type": "string"}}, "required": ["name"], "type": "object"}
    expect(field).to_have_value(json.dumps(example, indent=2))  # the `examples` of extract's schema field
    field.fill('{"type": "object",')
    expect(page.get_by_test_id("problem-schema")).to_contain_text("Not valid JSON")
    field.fill(json.dumps(schema, indent=2))
    expect(page.get_by_test_id("problem-schema")).to_have_count(0)
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_test_id("watch-state")).to_contain_text("COMPLETED", timeout=30_000)
    task_id = submitted_id(page)
    assert stack.task(task_id)["params"] == {"schema": schema}

    page.get_by_role("heading", name=WATCHED).get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(task_id)
    result = page.get_by_test_id("result-json")
    expect(result).to_have_text(json.dumps(wanted, indent=2))  # whitespace-insensitive: it waits for the result
    assert result.evaluate("e => [e.tagName, e.textContent]") == ["PRE", json.dumps(wanted, indent=2)]  # indented
    expect(page.get_by_test_id("params")).to_contain_text('"born": {')


def test_a_chat_submitted_through_the_form_shows_the_answer(open_page: Open, stack: Stack) -> None:
    page = open_page("/submit?type=chat")
    messages = [{"role": "user", "content": "Say hello. [[answer:Hello from the stand-in]]"}]
    page.get_by_role("textbox", name="Messages — JSON").fill(json.dumps(messages))
    page.get_by_role("spinbutton", name="Temperature (optional)").fill("0.2")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_test_id("result-content")).to_have_text("Hello from the stand-in", timeout=30_000)
    expect(page.get_by_test_id("finish-reason")).to_have_text("stop")
    task = stack.task(submitted_id(page))
    assert task["params"] == {"messages": messages, "temperature": 0.2}  # the empty optional fields left out


def test_a_field_the_api_refuses_shows_its_reason_next_to_it(open_page: Open, stack: Stack) -> None:
    page = open_page("/submit?type=chat")
    page.get_by_role("textbox", name="Messages — JSON").fill('[{"role": "user", "content": "Hello"}]')
    page.get_by_role("textbox", name="Model (optional)").fill("not/allowed")
    page.get_by_role("button", name="Submit").click()
    # The chat type refuses a model outside CHAT_ALLOWED_MODELS: a 422 naming the field.
    expect(page.get_by_test_id("problem-model")).to_contain_text("model 'not/allowed' is not allowed")
    expect(page.get_by_role("alert").filter(has_text="422 validation_error")).to_be_visible()
    expect(page.get_by_role("heading", name=WATCHED)).to_have_count(0)


# --- an API with the offline provider ------------------------------------------------------------
@pytest.fixture(scope="module")
def offline_api(redis_url: str, llm: StubLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API alone (no worker: nothing here runs a task), its provider the offline one."""
    api = Stack(redis_url, llm.url, tmp_path_factory.mktemp("e2e-offline"), LLM_PROVIDER="offline")
    api.start("api")
    yield api
    api.stop()


@pytest.fixture(scope="module")
def offline_dashboard(offline_api: Stack, dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    server = Dashboard(offline_api, dist, tmp_path_factory.mktemp("e2e-offline-frontend"))
    yield server
    server.stop()


def test_offline_the_types_needing_an_llm_are_disabled_with_the_reason(
    browser: Any, offline_api: Stack, offline_dashboard: Dashboard
) -> None:
    context = browser.new_context(viewport=DESKTOP, base_url=offline_dashboard.url)
    try:
        page = context.new_page()
        page.goto("/submit")
        expect(page.get_by_role("radio", name="summarize")).to_be_checked()
        expect(page.get_by_role("radio", name="summarize")).to_be_enabled()
        for name in NEEDS_AN_LLM:
            expect(page.get_by_role("radio", name=name)).to_be_disabled()
            expect(page.get_by_test_id(f"reason-{name}")).to_contain_text("OPENROUTER_API_KEY")
        # An address naming one of them shows its form disabled: nothing to submit.
        page.goto("/submit?type=translate")
        expect(page.get_by_label("Text to translate")).to_be_disabled()
        expect(page.get_by_role("button", name="Submit")).to_be_disabled()
        # In the words of the API's own refusal of such a submit.
        refusal = offline_api.http.post("/api/v1/tasks/translate/", json={"content": "x", "target_language": "French"})
        assert (refusal.status_code, refusal.json()["code"]) == (422, "provider_required")
        message = refusal.json()["message"]
        expect(page.get_by_test_id("unavailable")).to_have_text(message[0].upper() + message[1:])
    finally:
        context.close()


def test_the_component_tests_schemas_are_what_an_offline_api_lists(offline_api: Stack) -> None:
    """frontend/src/fixtures/task-types.offline.json feeds the Vitest form tests: it must stay the
    API's own answer (regenerate it from GET /api/v1/task-types of an offline API when a type changes)."""
    listed = offline_api.http.get("/api/v1/task-types").json()
    assert json.loads(FIXTURE.read_text()) == listed
