"""The OpenRouter provider against the loopback stub (real HTTP), and `classify` as a pure function."""

from __future__ import annotations

import email.utils
import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from core.errors import LLMError, LLMInputRejected, LLMProviderProblem, LLMRateLimited, LLMTransient
from core.settings import Settings
from tasktypes.base import Completion, fill, prompt
from tests.stub_llm import StubLLM
from tests.worker.helpers import summarize
from worker.providers import (
    LLMAccountProblem,
    OfflineProvider,
    OpenRouterProvider,
    build_provider,
    classify,
    parse_retry_after,
)

KEY = "test-key-s3cr3t-0123456789"


@pytest.fixture
def settings(stub: StubLLM) -> Settings:
    return Settings(openrouter_api_key=KEY, openrouter_base_url=stub.url, openrouter_model="stub/model-1")


@pytest.fixture
def provider(settings: Settings) -> Iterator[OpenRouterProvider]:
    p = OpenRouterProvider(settings)
    yield p
    p.close()


def unique(directive: str = "") -> str:
    """Task content with a fresh id, so the stub's per-content counters start at zero."""
    return f"Some text to summarize ({uuid.uuid4().hex}). {directive}"


def raises(provider: OpenRouterProvider, content: str, kind: type[LLMError]) -> LLMError:
    """The error `summarize` raises; the key must never appear in it or in what it wraps."""
    with pytest.raises(kind) as info:
        summarize(provider, content)
    error = info.value
    for text in (str(error), repr(error), str(error.__cause__ or ""), repr(error.__cause__ or "")):
        assert KEY not in text
    return error


# --- success ---------------------------------------------------------------------------------
def test_default_answer_with_usage(provider: OpenRouterProvider) -> None:
    summary = summarize(provider, unique())
    assert summary == Completion("stub summary", "openrouter", "stub/model-1", summary.usage, "stop")
    assert summary.usage is not None and summary.usage["total_tokens"] > 0


def test_tag_answer(provider: OpenRouterProvider) -> None:
    assert summarize(provider, unique("[[tag:abc-1]]")).text == "summary:abc-1"


def test_request_carries_key_model_and_prompt(provider: OpenRouterProvider, stub: StubLLM) -> None:
    content = unique("braces {content} {0} {x} stay as they are")
    summarize(provider, content)
    (call,) = stub.calls()
    assert call["token"] == KEY and call["model"] == "stub/model-1" and call["status"] == 200
    assert call["content"] == fill(prompt("summarize"), content=content)
    assert content in call["content"] and "{content}" not in fill(prompt("summarize"), content="x")


def test_trailing_slash_in_base_url(stub: StubLLM) -> None:
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=stub.url + "/")
    assert summarize(OpenRouterProvider(settings), unique()).text == "stub summary"


def test_one_client_shared_by_threads(provider: OpenRouterProvider, stub: StubLLM) -> None:
    stub.state.delay = 0.2
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            texts = list(pool.map(lambda i: summarize(provider, unique(f"[[tag:{i}]]")).text, range(32)))
        elapsed = time.monotonic() - started
    finally:
        stub.state.delay = 0.0
    assert texts == [f"summary:{i}" for i in range(32)]
    assert elapsed < 2.0  # concurrent, not 32 x 0.2 s in a row


# --- failures, by stub directive -------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, LLMTransient),
        (502, LLMTransient),
        (503, LLMTransient),
        (504, LLMTransient),
        (408, LLMTransient),
        (429, LLMRateLimited),
        (400, LLMInputRejected),
        (413, LLMInputRejected),
        (422, LLMInputRejected),
        (409, LLMInputRejected),
        (401, LLMProviderProblem),
        (402, LLMProviderProblem),
        (403, LLMProviderProblem),
        (404, LLMProviderProblem),
    ],
)
def test_status_directive(provider: OpenRouterProvider, status: int, kind: type[LLMError]) -> None:
    error = raises(provider, unique(f"[[status:{status}]]"), kind)
    assert f"HTTP {status}" in str(error) and f"stub status {status}" in str(error)
    assert error.retry_after is None


def test_400_shorthand_is_input_rejected(provider: OpenRouterProvider) -> None:
    assert "stub rejected this input" in str(raises(provider, unique("[[400]]"), LLMInputRejected))


def test_503_with_retry_after_is_rate_limited(provider: OpenRouterProvider) -> None:
    error = raises(provider, unique("[[status:503]][[retry_after:7]]"), LLMRateLimited)
    assert error.retry_after == 7.0


def test_429_then_success(provider: OpenRouterProvider, stub: StubLLM) -> None:
    content = unique("[[429:3]][[tag:later]]")
    assert raises(provider, content, LLMRateLimited).retry_after == 3.0
    assert summarize(provider, content).text == "summary:later"
    assert [c["status"] for c in stub.calls()] == [429, 200]


def test_fail_n_times_then_success(provider: OpenRouterProvider) -> None:
    content = unique("[[fail:2]]")
    raises(provider, content, LLMTransient)
    raises(provider, content, LLMTransient)
    assert summarize(provider, content).text == "stub summary"


@pytest.mark.parametrize("directive", ["[[error200]]", "[[nochoices]]", "[[badjson]]"])
def test_broken_200_is_transient(provider: OpenRouterProvider, directive: str) -> None:
    error = raises(provider, unique(directive), LLMTransient)
    if directive == "[[error200]]":
        assert "upstream" in str(error)


def test_timeout_is_transient(stub: StubLLM) -> None:
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=stub.url, openrouter_timeout=0.3)
    started = time.monotonic()
    error = raises(OpenRouterProvider(settings), unique("[[delay:2]]"), LLMTransient)
    assert time.monotonic() - started < 1.5
    assert "timeout" in str(error).lower()


def test_trickling_answer_is_cut_at_the_soft_time_limit(stub: StubLLM) -> None:
    settings = Settings(
        openrouter_api_key=KEY, openrouter_base_url=stub.url, openrouter_timeout=5,
        celery_task_soft_time_limit=1, celery_task_time_limit=2,
    )
    content = unique("[[trickle:10]]")
    started = time.monotonic()
    error = raises(OpenRouterProvider(settings), content, LLMTransient)
    assert 1 <= time.monotonic() - started < 2, "bytes kept arriving: only the total deadline ended it"
    assert "soft time limit" in str(error)
    assert summarize(OpenRouterProvider(settings), content).text == "stub summary", "later calls do not trickle"


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nobody listens there
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=f"http://127.0.0.1:{port}/v1")
    raises(OpenRouterProvider(settings), unique(), LLMTransient)


def test_key_in_url_is_scrubbed_from_messages() -> None:
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=f"http://127.0.0.1:1/{KEY}")
    error = raises(OpenRouterProvider(settings), unique(), LLMTransient)
    assert "***" in str(error)


def test_bad_scheme_is_provider_problem() -> None:
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url="ftp://127.0.0.1/v1")
    raises(OpenRouterProvider(settings), unique(), LLMProviderProblem)


def test_missing_key_gets_401_provider_problem(stub: StubLLM) -> None:
    settings = Settings(llm_provider="openrouter", openrouter_base_url=stub.url)
    error = raises(OpenRouterProvider(settings), unique(), LLMProviderProblem)
    assert "401" in str(error)


# --- classify (pure) -------------------------------------------------------------------------
def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def completion(content: Any, finish_reason: str = "stop") -> bytes:
    return body({"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}]})


def test_classify_ok() -> None:
    assert classify(200, {}, completion("fine")) is None
    assert classify(201, {}, completion("fine").decode()) is None


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"", body([1, 2]), body({"id": "x"}), body({"choices": []}), body({"choices": [{"message": 3}]})],
)
def test_classify_malformed_200_is_transient(raw: bytes) -> None:
    assert isinstance(classify(200, {}, raw), LLMTransient)


def test_classify_empty_content() -> None:
    assert isinstance(classify(200, {}, completion("  ")), LLMTransient)
    assert isinstance(classify(200, {}, completion(None)), LLMTransient)
    assert isinstance(classify(200, {}, completion(None, "content_filter")), LLMInputRejected)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (502, LLMTransient),
        (429, LLMRateLimited),
        (400, LLMInputRejected),
        (402, LLMProviderProblem),
        ("408", LLMTransient),
        ("rate_limit", LLMTransient),
        (None, LLMTransient),
        (200, LLMTransient),
    ],
)
def test_classify_200_with_error_object(code: Any, kind: type[LLMError]) -> None:
    error = classify(200, {}, body({"error": {"code": code, "message": "upstream says no"}}))
    assert isinstance(error, kind) and "upstream says no" in str(error) and "HTTP 200 with error code" in str(error)


def test_classify_error_on_the_choice() -> None:
    raw = body({"choices": [{"message": {"content": ""}, "finish_reason": "error", "error": {"code": 429}}]})
    assert isinstance(classify(200, {}, raw), LLMRateLimited)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, LLMTransient),
        (599, LLMTransient),
        (408, LLMTransient),
        (429, LLMRateLimited),
        (400, LLMInputRejected),
        (413, LLMInputRejected),
        (422, LLMInputRejected),
        (418, LLMInputRejected),
        (401, LLMAccountProblem),
        (402, LLMAccountProblem),
        (403, LLMProviderProblem),
        (404, LLMProviderProblem),
        (301, LLMProviderProblem),
    ],
)
def test_classify_status(status: int, kind: type[LLMError]) -> None:
    assert type(classify(status, {}, b"<html>gateway</html>")) is kind


def test_classify_retry_after_seconds_and_case() -> None:
    error = classify(429, {"Retry-After": "12"}, b"{}")
    assert isinstance(error, LLMRateLimited) and error.retry_after == 12.0
    no_header = classify(429, {}, b"{}")
    assert isinstance(no_header, LLMRateLimited) and no_header.retry_after is None


def test_classify_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = classify(429, {"retry-after": when}, b"")
    assert isinstance(error, LLMRateLimited) and error.retry_after is not None
    assert 27 <= error.retry_after <= 31


def test_classify_503() -> None:
    assert type(classify(503, {}, b"")) is LLMTransient
    limited = classify(503, {"retry-after": "4"}, b"")
    assert isinstance(limited, LLMRateLimited) and limited.retry_after == 4.0


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 60, usegmt=True), now=now) == 60.0
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None and parse_retry_after(None) is None


def test_classify_message_truncated_with_metadata_raw() -> None:
    error = classify(400, {}, body({"error": {"message": "x" * 1000, "metadata": {"raw": "provider detail"}}}))
    assert isinstance(error, LLMInputRejected) and len(str(error)) <= 500
    assert "provider detail" in str(error), "a long message never hides the upstream's own words"
    huge_raw = classify(429, {}, body({"error": {"message": "slow", "metadata": {"raw": "r" * 5000}}}))
    assert huge_raw is not None and "slow" in str(huge_raw) and len(str(huge_raw)) <= 500
    short = classify(400, {}, body({"error": {"message": "too long", "metadata": {"raw": "ctx 9000 > 8192"}}}))
    assert "too long" in str(short) and "ctx 9000 > 8192" in str(short)


# --- build_provider --------------------------------------------------------------------------
def test_build_provider_offline_without_key() -> None:
    assert isinstance(build_provider(Settings()), OfflineProvider)
    assert isinstance(build_provider(Settings(openrouter_api_key="")), OfflineProvider)
    assert isinstance(build_provider(Settings(openrouter_api_key=KEY, llm_provider="offline")), OfflineProvider)
    assert build_provider(Settings()).name == "offline"


def test_build_provider_openrouter_with_key() -> None:
    provider = build_provider(Settings(openrouter_api_key=KEY))
    assert isinstance(provider, OpenRouterProvider) and provider.name == "openrouter"
    assert isinstance(build_provider(Settings(llm_provider="openrouter")), OpenRouterProvider)
