"""OpenRouter specifics against the loopback stand-in: attribution headers, model fallback,
error.metadata.raw in the message, moderation, the call observer and the fleet's token hook."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from core.errors import LLMInputRejected, LLMProviderProblem, LLMRateLimited, LLMTransient
from core.settings import Settings
from tests.stub_llm import StubLLM
from tests.worker.helpers import summarize
from worker.providers import (
    Budget,
    CallRecord,
    LLMAccountProblem,
    OpenRouterProvider,
    Throttled,
    request_headers,
)

KEY = "sk-or-test-0123456789abcdef"
MAIN, BACKUP, LAST = "stub/main", "stub/backup", "stub/last"


@pytest.fixture
def settings(stub: StubLLM) -> Settings:
    return Settings(
        openrouter_api_key=KEY, openrouter_base_url=stub.url, openrouter_model=MAIN,
        openrouter_fallback_models=f"{BACKUP}, {LAST}", openrouter_http_referer="https://atf.example",
    )  # fmt: skip


@pytest.fixture
def provider(settings: Settings) -> Iterator[OpenRouterProvider]:
    p = OpenRouterProvider(settings)
    yield p
    p.close()


def text(directives: str = "") -> str:
    return f"Text number {uuid.uuid4().hex}. {directives}"


def models_asked(stub: StubLLM) -> list[tuple[str, int]]:
    return [(c["model"], c["status"]) for c in stub.calls()]


def test_bearer_key_and_attribution_headers_from_settings(provider: OpenRouterProvider, stub: StubLLM) -> None:
    summarize(provider, text())
    (call,) = stub.calls()
    assert call["token"] == KEY
    assert call["headers"]["http-referer"] == "https://atf.example"
    assert call["headers"]["x-title"] == "AsyncTaskFlow"


def test_empty_attribution_settings_send_no_header() -> None:
    assert request_headers(Settings(openrouter_http_referer="", openrouter_x_title="")) == {}
    assert request_headers(Settings(openrouter_x_title="Mine")) == {"X-Title": "Mine"}


def test_fallback_list_is_ordered_without_blanks_duplicates_or_the_main_model() -> None:
    settings = Settings(openrouter_model="a", openrouter_fallback_models=" b, ,a,c,b ")
    assert settings.fallback_models == ["b", "c"]
    assert Settings().fallback_models == []


def test_main_model_answers_without_fallback(provider: OpenRouterProvider, stub: StubLLM) -> None:
    summary = summarize(provider, text())
    assert summary.model == MAIN and models_asked(stub) == [(MAIN, 200)]


@pytest.mark.parametrize("status", [500, 502, 503, 404, 429])
def test_a_failing_main_model_falls_back_in_order(provider: OpenRouterProvider, stub: StubLLM, status: int) -> None:
    summary = summarize(provider, text(f"[[models:{MAIN}={status}]]"))
    assert summary.model == BACKUP and summary.text == "stub summary"
    assert models_asked(stub) == [(MAIN, status), (BACKUP, 200)]


def test_every_model_failing_says_each_reason_and_stays_retryable(provider: OpenRouterProvider, stub: StubLLM) -> None:
    with pytest.raises(LLMTransient) as info:
        summarize(provider, text(f"[[models:{MAIN}=404,{BACKUP}=503,{LAST}=404]]"))
    message = str(info.value)
    assert f"{MAIN}: HTTP 404" in message and f"{BACKUP}: HTTP 503" in message and f"{LAST}: HTTP 404" in message
    assert [m for m, _ in models_asked(stub)] == [MAIN, BACKUP, LAST]


def test_only_unknown_models_is_a_provider_problem(provider: OpenRouterProvider) -> None:
    with pytest.raises(LLMProviderProblem) as info:
        summarize(provider, text(f"[[models:{MAIN}=404,{BACKUP}=404,{LAST}=404]]"))
    assert type(info.value) is LLMProviderProblem


def test_rate_limited_everywhere_keeps_the_retry_after(provider: OpenRouterProvider) -> None:
    content = text(f"[[models:{MAIN}=429,{BACKUP}=429,{LAST}=429]][[retry_after:9]]")
    with pytest.raises(LLMRateLimited) as info:
        summarize(provider, content)
    assert info.value.retry_after == 9.0


@pytest.mark.parametrize(
    ("directive", "kind"), [("[[400]]", LLMInputRejected), ("[[status:401]]", LLMAccountProblem),
                            ("[[status:402]]", LLMAccountProblem), ("[[moderated]]", LLMInputRejected)],
)  # fmt: skip
def test_no_fallback_when_every_model_would_refuse(
    provider: OpenRouterProvider, stub: StubLLM, directive: str, kind: type[Exception]
) -> None:
    with pytest.raises(kind):
        summarize(provider, text(directive))
    assert [m for m, _ in models_asked(stub)] == [MAIN], "the input or the key is refused by any model"


def test_metadata_raw_and_upstream_are_in_the_message(provider: OpenRouterProvider) -> None:
    with pytest.raises(LLMTransient) as info:
        summarize(provider, text(f"[[models:{MAIN}=502,{BACKUP}=502,{LAST}=502]][[raw:upstream overloaded (code 7)]]"))
    assert "raw: upstream overloaded (code 7)" in str(info.value) and "[upstream: StubUpstream]" in str(info.value)


def test_the_observer_sees_each_call(settings: Settings) -> None:
    provider = OpenRouterProvider(settings)
    seen: list[CallRecord] = []
    provider.observer = seen.append
    summarize(provider, text(f"[[models:{MAIN}=503]]"))
    assert [(r.model, r.error_type) for r in seen] == [(MAIN, "transient"), (BACKUP, "")]
    assert "HTTP 503" in seen[0].message and seen[1].usage and seen[1].usage["total_tokens"] > 0


def test_a_failing_observer_never_fails_the_call(settings: Settings) -> None:
    provider = OpenRouterProvider(settings)

    def broken(record: CallRecord) -> None:
        raise ConnectionError("redis away")

    provider.observer = broken
    assert summarize(provider, text()).text == "stub summary"


def test_each_call_takes_a_token_and_throttling_stops_the_fallback(provider: OpenRouterProvider, stub: StubLLM) -> None:
    taken: list[int] = []

    def take() -> None:
        taken.append(1)
        if len(taken) > 1:
            raise Throttled("no token", retry_after=3)

    with pytest.raises(Throttled):
        summarize(provider, text(f"[[models:{MAIN}=503]]"), budget=Budget(time.monotonic() + 30, take))
    assert len(taken) == 2 and models_asked(stub) == [(MAIN, 503)], "no call was made without a token"


def test_the_budget_deadline_ends_the_fallback(provider: OpenRouterProvider, stub: StubLLM) -> None:
    with pytest.raises(LLMTransient):
        summarize(provider, text(f"[[models:{MAIN}=503]][[delay:0.3]]"), budget=Budget(time.monotonic() + 0.2))
    assert len(stub.calls()) == 1, "no time was left for another model"


def test_a_refused_key_met_on_a_fallback_model_is_the_attempts_error(provider: OpenRouterProvider) -> None:
    with pytest.raises(LLMAccountProblem) as info:
        summarize(provider, text(f"[[models:{MAIN}=503,{BACKUP}=402]]"))
    assert f"{MAIN}: HTTP 503" in str(info.value) and f"{BACKUP}: HTTP 402" in str(info.value)
