"""GET /api/v1/openrouter/status and /metrics, and the pause of LLM calls in /health, on a real
Redis with the loopback stand-in as the provider (its GET /key answers as OpenRouter's)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
from pydantic import SecretStr

from api.main import create_app
from core.settings import Settings
from core.store import new_token
from core.task import Task
from tests.api.conftest import serve
from tests.stub_llm import StubLLM
from worker.runner import Runner

pytestmark = pytest.mark.anyio
KEY = "sk-or-v1-api-test-secret"


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    with StubLLM() as llm:
        yield llm


@pytest.fixture
def llm_settings(settings: Settings, stub: StubLLM) -> Settings:
    stub.reset()
    return settings.model_copy(update={
        "openrouter_api_key": SecretStr(KEY), "openrouter_base_url": stub.url, "openrouter_model": "stub/main",
        "openrouter_fallback_models": "stub/backup", "provider_pause_seconds": 300.0,
    })  # fmt: skip


@pytest.fixture
async def llm_client(llm_settings: Settings, real_redis: redis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async for c in serve(create_app(llm_settings)):
        yield c


def attempt(settings: Settings, content: str) -> str:
    """One worker attempt of a new task with `content`, against the stand-in."""
    runner = Runner(settings)
    task = runner.store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content=content))
    token = new_token()
    runner.store.claim("c1", token, prefer_retry=False)
    try:
        return runner.execute(task.id, token, "c1")
    finally:
        runner.close()  # its call metrics written, as at worker shutdown


async def test_offline_status_needs_no_provider(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/openrouter/status")).json()
    assert (body["provider"], body["model"], body["key_configured"]) == ("offline", "extractive", False)
    assert body["account"]["key_valid"] is None and body["rate_limit"]["enabled"] is False
    assert body["breaker"]["state"] == "closed" and body["paused"] is False


async def test_status_asks_the_provider_once_per_cache_period(llm_client: httpx.AsyncClient, stub: StubLLM) -> None:
    first = await llm_client.get("/api/v1/openrouter/status")
    assert first.status_code == 200
    body = first.json()
    assert (body["provider"], body["model"], body["fallback_models"]) == ("openrouter", "stub/main", ["stub/backup"])
    assert body["account"]["key_valid"] is True and body["account"]["limit_remaining"] == 8.75
    assert body["cached"] is False
    second = (await llm_client.get("/api/v1/openrouter/status")).json()
    assert second["cached"] is True and second["account"] == body["account"]
    assert stub.state.key_calls == 1, "the second request was answered from Redis"
    await llm_client.get("/api/v1/openrouter/status", params={"refresh": "true"})
    assert stub.state.key_calls == 2
    assert KEY not in first.text


@pytest.mark.parametrize(("status", "valid"), [(401, False), (402, True)])
async def test_a_refused_key_or_spent_credits_show(
    llm_client: httpx.AsyncClient, stub: StubLLM, status: int, valid: bool
) -> None:
    stub.state.key_status = status
    body = (await llm_client.get("/api/v1/openrouter/status")).json()
    assert body["account"]["key_valid"] is valid and f"HTTP {status}" in body["account"]["error"]


async def test_a_402_pauses_calls_and_health_says_why(llm_client: httpx.AsyncClient, llm_settings: Settings) -> None:
    assert attempt(llm_settings, "Text. [[status:402]]") == "released"
    status = (await llm_client.get("/api/v1/openrouter/status")).json()
    assert status["paused"] is True and "HTTP 402" in status["pause_reason"]
    assert status["breaker"]["state"] == "open" and status["breaker"]["seconds_left"] > 290
    # The task, the status and the metrics name the class alike (issue 16).
    assert status["last_error_type"] == "provider_paused" and status["last_error_model"] == "stub/main"
    metrics = (await llm_client.get("/api/v1/openrouter/metrics", params={"days": 1})).json()
    assert metrics["days"][-1]["errors_by_class"] == {"provider_paused": 1}
    health = await llm_client.get("/health")
    assert health.status_code == 503
    assert any("LLM provider paused" in p and "HTTP 402" in p for p in health.json()["problems"])
    await llm_client.post("/health/workers/reset-circuit-breaker")
    health = (await llm_client.get("/health")).json()
    assert not any("paused" in p for p in health["problems"]), "the operator's reset ends the pause"
    status = (await llm_client.get("/api/v1/openrouter/status")).json()
    assert (status["paused"], status["paused_until"], status["pause_reason"]) == (False, None, None)


async def test_a_server_without_a_key_endpoint_is_not_an_error(llm_client: httpx.AsyncClient, stub: StubLLM) -> None:
    """OpenAI, vLLM, Ollama and LiteLLM have no `/key`: they answer 404."""
    stub.state.key_status = 404
    account = (await llm_client.get("/api/v1/openrouter/status")).json()["account"]
    assert account["key_valid"] is None and account["error"] is None
    assert account["note"].startswith("not available for this provider")


async def test_health_says_degraded_while_429s_persist(llm_client: httpx.AsyncClient, llm_settings: Settings) -> None:
    before = (await llm_client.get("/health")).json()
    assert not any("rate limited" in w for w in before["warnings"])
    assert attempt(llm_settings, "Text. [[body:openai/rate_limit_exceeded]]") == "scheduled"
    after = (await llm_client.get("/health")).json()
    (warning,) = [w for w in after["warnings"] if w.startswith("degraded: rate limited")]
    assert "50%" in warning, "the fleet's pace, halved by the 429"


async def test_metrics_per_day(llm_client: httpx.AsyncClient, llm_settings: Settings) -> None:
    assert attempt(llm_settings, "Text. [[models:stub/main=503]]") == "completed"
    assert attempt(llm_settings, "Text. [[400]]") == "failed"
    body = (await llm_client.get("/api/v1/openrouter/metrics", params={"days": 3})).json()
    assert [d["day"] for d in body["days"]] == sorted(d["day"] for d in body["days"]) and len(body["days"]) == 3
    today = body["days"][-1]
    assert (today["calls"], today["ok"], today["errors"]) == (3, 1, 2)
    assert today["errors_by_class"] == {"transient": 1, "input_rejected": 1}
    assert today["models"] == {"stub/main": 2, "stub/backup": 1}
    assert today["total_tokens"] > 0 and body["total"]["calls"] == 3 and body["total"]["day"] == "total"


@pytest.mark.parametrize("days", [0, 91, "x"])
async def test_metrics_days_is_bounded(client: httpx.AsyncClient, days: object) -> None:
    response = await client.get("/api/v1/openrouter/metrics", params={"days": days})
    assert response.status_code == 422 and "code" in response.json()
