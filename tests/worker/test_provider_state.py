"""What the workers write about the provider: per-day call metrics, the last error and success,
and the fleet's rate limit that slows down after a 429 and recovers after successes."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
import redis

from core.provider_state import ProviderState, day_of
from core.settings import Settings
from core.store import TaskStore, new_token
from core.task import Task
from tests.stub_llm import StubLLM
from worker.provider_state import FLUSH_SECONDS, ProviderRecorder
from worker.providers import CallRecord, OfflineProvider
from worker.ratelimit import BUCKET
from worker.runner import Runner

CONSUMER = "c1"



@pytest.fixture
def settings(redis_url: str, key_prefix: str, stub: StubLLM, real_redis: redis.Redis) -> Settings:
    return Settings(
        redis_url=redis_url, redis_key_prefix=key_prefix, openrouter_api_key="test-key", openrouter_base_url=stub.url,
        openrouter_model="stub/main", openrouter_fallback_models="stub/backup", llm_rate_limit_requests=100,
    )  # fmt: skip


def run(runner: Runner, content: str) -> str:
    store: TaskStore = runner.store
    task = store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content=f"{uuid.uuid4().hex} {content}"))
    token = new_token()
    assert store.claim(CONSUMER, token, prefer_retry=False).task_id == task.id
    return runner.execute(task.id, token, CONSUMER)


def test_calls_are_counted_per_day_by_outcome_model_and_tokens(settings: Settings) -> None:
    runner = Runner(settings)
    assert run(runner, "[[models:stub/main=502]][[raw:overloaded]]") == "completed"
    assert run(runner, "[[400]]") == "failed"
    runner.close()  # as at worker shutdown: what was collected is written
    daily = runner.store.r.hgetall(runner.store.keys.llm_daily(day_of(time.time())))
    assert {k: daily[k] for k in ("calls", "ok", "errors", "error:transient", "error:input_rejected")} == {
        "calls": "3", "ok": "1", "errors": "2", "error:transient": "1", "error:input_rejected": "1"}  # fmt: skip
    assert (daily["model:stub/main"], daily["model:stub/backup"]) == ("2", "1")
    assert int(daily["total_tokens"]) == int(daily["prompt_tokens"]) + int(daily["completion_tokens"]) > 0
    assert 80 * 86400 < runner.store.r.ttl(runner.store.keys.llm_daily(day_of(time.time()))) <= 90 * 86400
    state = runner.store.r.hgetall(runner.store.keys.llm_state)
    assert state["last_error_type"] == "input_rejected" and "HTTP 400" in state["last_error"]
    assert state["last_model"] == "stub/backup" and int(state["last_success_at"]) > 0


def test_metrics_are_written_within_a_second_without_a_flush(settings: Settings) -> None:
    runner = Runner(settings)
    daily = runner.store.keys.llm_daily(day_of(time.time()))
    assert run(runner, "fine") == "completed"
    assert run(runner, "also fine") == "completed"
    assert runner.store.r.hget(daily, "calls") is None, "collected, not yet written"
    deadline = time.monotonic() + FLUSH_SECONDS + 2
    while runner.store.r.hget(daily, "calls") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.store.r.hget(daily, "calls") == "2" and runner.store.r.hget(daily, "ok") == "2"
    assert runner.store.r.hget(runner.store.keys.llm_state, "last_model") == "stub/main"


def test_metrics_that_redis_refused_are_kept_for_the_next_flush(settings: Settings) -> None:
    runner = Runner(settings)
    daily = runner.store.keys.llm_daily(day_of(time.time()))
    away = redis.Redis(port=1, socket_connect_timeout=0.2)  # nothing listens on port 1
    redis_now = SimpleNamespace(pipeline=away.pipeline)
    recorder = ProviderRecorder(ProviderState(redis_now, runner.store.keys))
    recorder.record(CallRecord("stub/main", usage={"total_tokens": 7}))
    recorder.flush()
    redis_now.pipeline = runner.store.r.pipeline  # Redis is back
    recorder.record(CallRecord("stub/main", "transient", "HTTP 502"))
    recorder.flush()
    figures = runner.store.r.hgetall(daily)
    assert {k: figures[k] for k in ("calls", "ok", "errors", "total_tokens")} == {
        "calls": "2", "ok": "1", "errors": "1", "total_tokens": "7"}  # fmt: skip
    runner.close()


def test_a_429_slows_the_fleet_down_and_successes_speed_it_up(settings: Settings) -> None:
    runner = Runner(settings.model_copy(update={"openrouter_fallback_models": ""}))
    bucket = runner.store.keys.rate_bucket(BUCKET)
    assert run(runner, "[[429:3]]") == "scheduled"
    assert float(runner.store.r.hget(bucket, "factor")) == 0.5
    assert run(runner, "too soon") == "scheduled", "the bucket was emptied: the next token is 20 ms away"
    time.sleep(0.05)
    assert run(runner, "fine") == "completed"
    assert float(runner.store.r.hget(bucket, "factor")) == pytest.approx(0.52)


def test_the_offline_provider_makes_no_call_and_writes_no_metrics_but_its_last_success(settings: Settings) -> None:
    runner = Runner(settings, provider=OfflineProvider(settings))
    before = int(time.time() * 1000)
    assert run(runner, "One sentence here. Another one there.") == "completed"
    runner.close()
    assert not runner.store.r.exists(runner.store.keys.llm_daily(day_of(time.time())))
    assert not runner.store.r.exists(runner.store.keys.rate_bucket(BUCKET)), "no rate limit offline"
    state = runner.store.r.hgetall(runner.store.keys.llm_state)
    assert state["last_model"] == "extractive" and int(state["last_success_at"]) >= before
    assert "last_error" not in state


def test_a_reset_ends_a_pause_for_good(settings: Settings) -> None:
    """After an operator's reset, the next trip waits the ordinary reset timeout, not the pause."""
    breaker = Runner(settings).breaker
    breaker.pause(3600)
    assert breaker.state == "open" and breaker.seconds_left() > 3000
    breaker.close()
    assert breaker.state == "closed"
    breaker.pause(0)  # any new opening
    assert breaker.seconds_left() <= settings.circuit_breaker_reset_timeout + 1
