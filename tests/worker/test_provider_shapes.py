"""Errors read from the body, as each OpenAI-compatible server sends them: one table-driven test
per provider, the stand-in answering with that provider's real bodies (tests/stub_llm.py
PROVIDER_BODIES) over HTTP, and the real provider client classifying them. The README's table
names the same bodies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import (
    ERROR_TYPES,
    CircuitOpen,
    LLMAccountProblem,
    LLMContentFlagged,
    LLMContextTooLong,
    LLMError,
    LLMInputRejected,
    LLMInvalidOutput,
    LLMModelUnknown,
    LLMProviderProblem,
    LLMRateLimited,
    LLMTransient,
)
from core.settings import Settings
from tests.stub_llm import PROVIDER_BODIES, StubLLM
from tests.worker.helpers import summarize
from worker.provider_state import ProviderPaused
from worker.providers import OpenRouterProvider, Throttled, classify, error_body

ROOT = Path(__file__).resolve().parents[2]
MAIN, BACKUP = "stub/main", "stub/backup"
KEY = "sk-test-shapes-0123456789"

# body → (the class it must raise, the error_type everything reports it under)
EXPECTED: dict[str, tuple[type[LLMError], str]] = {
    "openai/model_not_found": (LLMModelUnknown, "provider_problem"),
    "openai/invalid_api_key": (LLMAccountProblem, "provider_paused"),
    "openai/insufficient_quota": (LLMAccountProblem, "provider_paused"),
    "openai/context_length_exceeded": (LLMContextTooLong, "input_rejected"),
    "openai/rate_limit_exceeded": (LLMRateLimited, "rate_limited"),
    "openrouter/invalid_model": (LLMModelUnknown, "provider_problem"),
    "openrouter/no_credits": (LLMAccountProblem, "provider_paused"),
    "openrouter/no_auth": (LLMAccountProblem, "provider_paused"),
    "openrouter/rate_limited": (LLMRateLimited, "rate_limited"),
    "vllm/model_not_found": (LLMModelUnknown, "provider_problem"),
    "vllm/model_not_found_wrapped": (LLMModelUnknown, "provider_problem"),
    "vllm/context_length": (LLMContextTooLong, "input_rejected"),
    "ollama/model_not_found": (LLMModelUnknown, "provider_problem"),
    "ollama/native_model_not_found": (LLMModelUnknown, "provider_problem"),
    "litellm/invalid_model": (LLMModelUnknown, "provider_problem"),
    "litellm/invalid_model_nested": (LLMModelUnknown, "provider_problem"),
    "litellm/no_connected_db": (LLMAccountProblem, "provider_paused"),
    "litellm/auth_error": (LLMAccountProblem, "provider_paused"),
    "litellm/authentication_error": (LLMAccountProblem, "provider_paused"),
    "litellm/rate_limit": (LLMRateLimited, "rate_limited"),
}


@pytest.fixture
def provider(stub: StubLLM) -> Iterator[OpenRouterProvider]:
    p = OpenRouterProvider(Settings(openrouter_api_key=KEY, openrouter_base_url=stub.url, openrouter_model=MAIN))
    yield p
    p.close()


def raised(provider: OpenRouterProvider, directive: str) -> LLMError:
    with pytest.raises(LLMError) as info:
        summarize(provider, f"Text {uuid.uuid4().hex}. {directive}")
    return info.value


def check_provider(provider: OpenRouterProvider, prefix: str) -> None:
    """Every body of one provider, over HTTP: its class, its error_type, and its own words kept."""
    names = [name for name in PROVIDER_BODIES if name.startswith(prefix + "/")]
    assert names, prefix
    for name in names:
        kind, error_type = EXPECTED[name]
        error = raised(provider, f"[[body:{name}]]")
        assert type(error) is kind, name
        assert error.error_type == error_type, name
        assert f"HTTP {PROVIDER_BODIES[name][0]}" in str(error), name
        found = error_body(PROVIDER_BODIES[name][1])
        assert found is not None and found.message[:40] in str(error), name
        if kind is LLMRateLimited:
            assert error.retry_after is None, "these 429s carry no Retry-After"


def test_openai_bodies(provider: OpenRouterProvider) -> None:
    check_provider(provider, "openai")


def test_openrouter_bodies(provider: OpenRouterProvider) -> None:
    check_provider(provider, "openrouter")


def test_vllm_bodies(provider: OpenRouterProvider) -> None:
    check_provider(provider, "vllm")


def test_ollama_bodies(provider: OpenRouterProvider) -> None:
    check_provider(provider, "ollama")


def test_litellm_bodies(provider: OpenRouterProvider) -> None:
    check_provider(provider, "litellm")


def test_every_body_has_an_expectation_and_a_line_in_the_readme() -> None:
    assert set(EXPECTED) == set(PROVIDER_BODIES)
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in PROVIDER_BODIES if f"`{name}`" not in readme]
    assert missing == [], "bodies missing from the README's provider table"


@pytest.mark.parametrize("name", sorted(PROVIDER_BODIES))
def test_the_body_wins_over_a_200(name: str) -> None:
    """OpenRouter reports upstream errors as a 200 with an error object: its body decides alike."""
    payload = PROVIDER_BODIES[name][1]
    if not isinstance(payload.get("error"), dict):
        pytest.skip("only an error object can ride on a 200")
    kind, _ = EXPECTED[name]
    assert type(classify(200, {}, json.dumps(payload))) is kind


def test_unknown_model_as_a_400_tries_the_fallback(stub: StubLLM) -> None:
    """LiteLLM says "Invalid model name" with a 400: the fallback model is asked and answers."""
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=stub.url, openrouter_model=MAIN,
                        openrouter_fallback_models=BACKUP)  # fmt: skip
    provider = OpenRouterProvider(settings)
    try:
        summary = summarize(provider, f"Text. [[tag:fb]] [[models:{MAIN}=litellm/invalid_model]]")
    finally:
        provider.close()
    assert (summary.text, summary.model) == ("summary:fb", BACKUP)
    assert [(c["model"], c["status"]) for c in stub.calls()] == [(MAIN, 400), (BACKUP, 200)]


def test_a_refused_key_ends_the_fallback_at_once(stub: StubLLM) -> None:
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=stub.url, openrouter_model=MAIN,
                        openrouter_fallback_models=BACKUP)  # fmt: skip
    provider = OpenRouterProvider(settings)
    try:
        with pytest.raises(LLMAccountProblem):
            summarize(provider, f"Text. [[models:{MAIN}=openai/insufficient_quota]]")
    finally:
        provider.close()
    assert [c["model"] for c in stub.calls()] == [MAIN]


def test_one_vocabulary_of_error_classes() -> None:
    """Every class an attempt can end with reports a name of ERROR_TYPES, the names the task, the
    status, the metrics and the history share."""
    classes = [LLMTransient, LLMRateLimited, Throttled, LLMInputRejected, LLMContentFlagged, LLMContextTooLong,
               LLMProviderProblem, LLMModelUnknown, LLMAccountProblem, CircuitOpen, ProviderPaused,
               LLMInvalidOutput]  # fmt: skip
    queue_own = {"internal", "worker_lost", "dispatch_failed", "shutdown"}
    assert {c.error_type for c in classes} | queue_own == set(ERROR_TYPES)
    sources = [*(ROOT / "core" / "scripts").glob("*.lua"), ROOT / "consumer" / "consumer.py"]
    for name in ("worker_lost", "dispatch_failed", "shutdown"):
        assert any(f"'{name}'" in p.read_text() or f'"{name}"' in p.read_text() for p in sources), name
