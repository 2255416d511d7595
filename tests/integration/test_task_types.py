"""Every task type on the real stack (API, consumer, Celery worker, scheduler as processes) with the
loopback LLM stand-in, which records each request's body: what each type sends and what it
stores. Then a type that lives only in the test suite (tests/toy_types/reverse.py), loaded with
TASK_TYPE_MODULES: no change to the queue machinery, the API, core/ or tasktypes/ runs it.

Starting a stack is slow on a small machine, so the tests share one stack per environment
(`Stacks`), grouped in this file by the environment they need."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasktypes import extract, summarize, translate
from tasktypes.base import fill, prompt
from tasktypes.pieces import split_with_breaks
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM

pytestmark = pytest.mark.integration

MAIN, OTHER = "stack/main", "stack/other"
MAX_TOKENS = 512  # OPENROUTER_MAX_TOKENS's default: what a type that sets none is given
DONE_TIMEOUT = 90  # seconds for a task to settle: generous, a loaded 2-core machine is slow
NETWORKED = {
    "CHUNK_CHARS": "1000",
    "OPENROUTER_MODEL": MAIN,
    "CHAT_ALLOWED_MODELS": f"{MAIN},{OTHER}",
    "TASK_TYPE_MODULES": "tests.toy_types.reverse",
}
OFFLINE = {"LLM_PROVIDER": "offline", "OPENROUTER_API_KEY": "", "TASK_TYPE_MODULES": "tests.toy_types.reverse"}
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                          "required": ["name"]}  # fmt: skip
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


class Stacks:
    """One stack at a time: the stack of the environment a test asks for, started on first use and
    kept for the next test that asks for the same environment; another environment stops it."""

    def __init__(self, redis_url: str, llm_url: str, workdir: Path) -> None:
        self.redis_url, self.llm_url, self.workdir = redis_url, llm_url, workdir
        self.env: dict[str, str] | None = None
        self.stack: Stack | None = None

    def get(self, env: dict[str, str]) -> Stack:
        if self.stack is None or self.env != env:
            self.stop()
            workdir = self.workdir / f"stack{len(list(self.workdir.iterdir()))}"
            workdir.mkdir()
            self.env, self.stack = dict(env), Stack(self.redis_url, self.llm_url, workdir, **env)
            self.stack.start_all()
        return self.stack

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        self.env = self.stack = None


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    with StubLLM(delay=0.05) as llm:
        yield llm


@pytest.fixture(scope="module")
def stacks(redis_url: str, stub: StubLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    shared = Stacks(redis_url, stub.url, tmp_path_factory.mktemp("task-types"))
    yield shared
    shared.stop()


@pytest.fixture
def networked(stacks: Stacks) -> Stack:
    return stacks.get(NETWORKED)


@pytest.fixture
def offline(stacks: Stacks) -> Stack:
    return stacks.get(OFFLINE)


def submit(stack: Stack, name: str, body: dict[str, Any]) -> str:
    response = stack.http.post(f"/api/v1/tasks/{name}/", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def finished(stack: Stack, task_id: str) -> dict[str, Any]:
    """The task as the API shows it, once it settled."""
    stack.wait_terminal([task_id], DONE_TIMEOUT)
    return stack.task(task_id)


def sent(stub: StubLLM, marker: str) -> list[dict[str, Any]]:
    """The body of every request that carried `marker` anywhere, in order."""
    return [c["request"] for c in stub.calls() if marker in json.dumps(c["request"], ensure_ascii=False)]


def paragraph(n: int, extra: str) -> str:
    """About 600 characters: each paragraph of a long text is a piece of its own at CHUNK_CHARS=1000."""
    return " ".join(f"Paragraph {n} sentence {i} is about {WORDS[(n + i) % 10]}." for i in range(14)) + extra


# --- each built-in type: the request it sends, what it stores ------------------------------------
def test_summarize_sends_its_prompt_and_stores_the_answer(networked: Stack, stub: StubLLM) -> None:
    content = "The committee met on Monday and approved the budget. [[tag:s1]]"
    task = finished(networked, submit(networked, "summarize", {"content": content}))

    assert (task["state"], task["result"], task["model"]) == ("COMPLETED", "summary:s1", MAIN)
    user = fill(prompt("summarize"), content=content)
    assert sent(stub, "[[tag:s1]]") == [{"model": MAIN, "max_tokens": MAX_TOKENS, "messages": [
        {"role": "system", "content": summarize.SYSTEM}, {"role": "user", "content": user}]}]  # fmt: skip


def test_translate_sends_its_prompt_with_both_languages(networked: Stack, stub: StubLLM) -> None:
    content = "Le comité s'est réuni lundi. [[tag:t1]]"
    body = {"content": content, "target_language": "English", "source_language": "French"}
    task = finished(networked, submit(networked, "translate", body))

    assert (task["state"], task["result"]) == ("COMPLETED", "summary:t1")
    assert task["params"] == {"target_language": "English", "source_language": "French"}
    user = fill(prompt("translate"), source="from French ", target="English", content=content)
    assert sent(stub, "[[tag:t1]]") == [{"model": MAIN, "max_tokens": MAX_TOKENS, "messages": [
        {"role": "system", "content": translate.SYSTEM}, {"role": "user", "content": user}]}]  # fmt: skip


def test_extract_sends_the_schema_and_stores_a_json_object(networked: Stack, stub: StubLLM) -> None:
    """EXTRACT_RESPONSE_FORMAT=json_schema (the default): the schema in `response_format` and in the
    prompt; the result is shown as the JSON object itself."""
    content = 'Ada Lovelace was 36. [[answer:{"name": "Ada Lovelace", "age": 36}]]'
    task = finished(networked, submit(networked, "extract", {"content": content, "schema": SCHEMA}))

    assert (task["state"], task["result"]) == ("COMPLETED", {"name": "Ada Lovelace", "age": 36})
    user = fill(prompt("extract"), schema=json.dumps(SCHEMA, ensure_ascii=False, indent=1), content=content)
    assert sent(stub, "Ada Lovelace was 36.") == [{
        "model": MAIN, "max_tokens": MAX_TOKENS,
        "messages": [{"role": "system", "content": extract.SYSTEM}, {"role": "user", "content": user}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "extraction", "schema": SCHEMA}},
    }]  # fmt: skip


def test_chat_sends_the_request_as_given_with_the_model_it_names(networked: Stack, stub: StubLLM) -> None:
    """The named model (allowed by CHAT_ALLOWED_MODELS) and nothing else is asked; the result is
    JSON {content, finish_reason, usage, model}; the usage is the task's and the day's metrics'."""
    counted = metrics_when_settled(networked, stub)
    question = "Capital of France? [[answer:Paris]] [[finish:stop]] [[tag:c1]]"
    messages = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": question}]
    body = {"messages": messages, "model": OTHER, "temperature": 0.2, "max_tokens": 20,
            "response_format": {"type": "text"}}  # fmt: skip
    task = finished(networked, submit(networked, "chat", body))

    assert sent(stub, "[[tag:c1]]") == [body], "exactly the request, with exactly the named model"
    prompt_tokens = len(question.split())  # the stand-in counts words
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1}
    assert (task["state"], task["result"]) == ("COMPLETED", {"content": "Paris", "finish_reason": "stop",
                                                             "usage": usage, "model": OTHER})  # fmt: skip
    assert (task["usage"], task["model"], task["content"]) == (usage, OTHER, question)
    after = metrics_when_settled(networked, stub)
    assert after["total_tokens"] - counted["total_tokens"] == usage["total_tokens"]
    assert after["models"].get(OTHER, 0) - counted["models"].get(OTHER, 0) == 1


def metrics_when_settled(stack: Stack, stub: StubLLM) -> dict[str, Any]:
    """Today's provider metrics once they count every call the stand-in got (the workers write
    them within a second)."""

    def settled() -> dict[str, Any] | None:
        total = stack.http.get("/api/v1/openrouter/metrics", params={"days": 1}).json()["total"]
        return total if total["calls"] == len(stub.calls()) else None

    return dict(wait_until(settled, 30, interval=0.2, what="the provider metrics to count every call"))


# --- extract's answers that are not valid ----------------------------------------------------------
def test_extract_asks_again_after_an_invalid_answer(networked: Stack, stub: StubLLM) -> None:
    content = 'Grace Hopper, 85. [[answers:Sure! Here it is.||{"age": 85}||{"name": "Grace Hopper", "age": 85}]]'
    task = finished(networked, submit(networked, "extract", {"content": content, "schema": SCHEMA}))

    assert (task["state"], task["retry_count"], task["result"]) == ("COMPLETED", 0, {"name": "Grace Hopper", "age": 85})
    asked = sent(stub, "Grace Hopper, 85.")
    assert [len(r["messages"]) for r in asked] == [2, 4, 6], "one conversation, each answer shown its error"
    errors = [m["content"] for m in asked[2]["messages"][3::2]]
    assert errors[0].startswith("That answer is not valid: not JSON (")
    assert errors[1].startswith("That answer is not valid: at (root): 'name' is a required property")


def test_extract_without_a_valid_answer_fails_with_the_validation_error(networked: Stack, stub: StubLLM) -> None:
    content = 'Nobody in particular. [[answer:{"name": 42}]]'
    task = finished(networked, submit(networked, "extract", {"content": content, "schema": SCHEMA}))

    assert (task["state"], task["error_type"], task["retry_count"]) == ("FAILED", "invalid_output", 0)
    assert "no answer valid against the schema in 3 tries: at name: 42 is not of type 'string'" in task["last_error"]
    assert len(sent(stub, "Nobody in particular.")) == 3, "EXTRACT_ATTEMPTS answers, then no retry"


# --- a long translate ------------------------------------------------------------------------------
def test_a_long_translate_with_a_failing_piece_is_joined_in_order(networked: Stack, stub: StubLLM) -> None:
    """[[echo]] translates into upper case. The third piece fails once: the task is retried, and
    the retry asks only that piece again (the others are kept); the result is every piece in
    order, with the paragraph breaks of the text."""
    parts = [paragraph(n, f" [[echo]] [[tag:L{n}]]" + (" [[fail:1]]" if n == 3 else "")) for n in range(1, 6)]
    content = "\n\n".join(parts)
    assert len(split_with_breaks(content, 1000)) == 5

    task = finished(networked, submit(networked, "translate", {"content": content, "target_language": "Upper"}))

    assert (task["state"], task["retry_count"], task["result"]) == ("COMPLETED", 1, content.upper())
    asked = [n for call in sent(stub, "[[tag:L") for n in range(1, 6) if f"[[tag:L{n}]]" in json.dumps(call)]
    assert asked == [1, 2, 3, 3, 4, 5]


# --- a type from the test suite, with a provider ---------------------------------------------------
def test_a_type_loaded_with_task_type_modules_asks_the_llm_once(networked: Stack, stub: StubLLM) -> None:
    task = finished(networked, submit(networked, "reverse", {"content": "stressed [[answer:desserts]]"}))

    assert (task["state"], task["task_type"], task["result"], task["provider"]) == (
        "COMPLETED", "reverse", "desserts", "openrouter")  # fmt: skip
    (request,) = sent(stub, "stressed [[answer:desserts]]")
    assert request["model"] == MAIN and request["messages"][-1]["content"].endswith("stressed [[answer:desserts]]")


# --- the same type offline, end to end -------------------------------------------------------------
def test_a_type_loaded_with_task_type_modules_runs_offline_end_to_end(offline: Stack, stub: StubLLM) -> None:
    """tests/toy_types/reverse.py, registered only in the test suite, through the API, the
    consumer, Celery and the scheduler processes, with the offline provider: listed, submitted,
    answered without a call."""
    calls = len(stub.calls())
    types = {t["name"]: t for t in offline.http.get("/api/v1/task-types").json()}
    assert types["reverse"]["available"] and types["reverse"]["answers_offline"]
    assert types["reverse"]["submit_path"] == "/api/v1/tasks/reverse/"
    assert types["reverse"]["input_schema"]["required"] == ["content"]
    assert not types["translate"]["available"], "the built-in types are there too, offline as ever"

    text = "A man, a plan, a canal: Panama! Ünïcödé 🤖"
    task = finished(offline, submit(offline, "reverse", {"content": text}))

    assert (task["state"], task["result"], task["provider"], task["model"]) == (
        "COMPLETED", text[::-1], "offline", "reverse")  # fmt: skip
    assert len(stub.calls()) == calls, "offline: no LLM call"
    offline.assert_nothing_left()


def test_a_worker_without_the_types_module_sends_its_tasks_to_the_dlq(stacks: Stacks, offline: Stack) -> None:
    """The API knows `reverse`, this worker does not (TASK_TYPE_MODULES differs): retrying could
    not help, so the task goes to the DLQ at once, saying what to do."""
    for name in ("consumer-a", "worker-a"):
        offline.kill(name, signal.SIGTERM)
    offline.env = {k: v for k, v in offline.env.items() if k != "TASK_TYPE_MODULES"}
    try:
        offline.start("worker", "b")
        offline.start("consumer", "b")
        offline.wait_started(("b",))

        task = finished(offline, submit(offline, "reverse", {"content": "unknown here"}))

        assert (task["state"], task["error_type"], task["retry_count"]) == ("DLQ", "provider_problem", 0)
        assert "no task type 'reverse' in this worker" in task["last_error"]
        assert "TASK_TYPE_MODULES" in task["last_error"]
    finally:
        stacks.stop()  # this stack's workers no longer match its environment
