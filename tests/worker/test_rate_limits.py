"""Rate limits, the input-rejected guard and the error vocabulary, one attempt at a time through
`Runner.execute`: real Redis, the loopback stand-in speaking the providers' own bodies, the real
shared breaker and rate bucket."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from core.provider_state import day_of
from core.settings import Settings
from core.states import State
from core.store import TaskStore, new_token
from core.task import Task
from tests.stub_llm import StubLLM
from worker.ratelimit import BUCKET
from worker.runner import Runner

CONSUMER = "c1"
RATE_LIMITED = "[[body:openai/rate_limit_exceeded]]"  # a 429 without Retry-After


@pytest.fixture
def settings(redis_url: str, key_prefix: str, stub: StubLLM, real_redis: redis.Redis) -> Settings:
    return Settings(
        redis_url=redis_url, redis_key_prefix=key_prefix, openrouter_api_key="test-key", openrouter_base_url=stub.url,
        max_retries=2, rate_limit_backoff_base=2, rate_limit_backoff_max=100, rate_limit_jitter=0,
        provider_pause_seconds=120, input_rejected_guard=3,
    )  # fmt: skip


def make_runner(settings: Settings, **changes: object) -> Runner:
    return Runner(settings.model_copy(update=changes))


def unpaced_runner(settings: Settings, **changes: object) -> Runner:
    """A fleet limit too generous to throttle anything, so one task's own backoff shows alone
    (without a configured limit a 429 paces the fleet: see the test below)."""
    return make_runner(settings, llm_rate_limit_requests=10_000, **changes)


def claimed(store: TaskStore, content: str) -> tuple[str, str]:
    store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content=content, max_retries=2))
    return claim_next(store)


def claim_next(store: TaskStore, prefer_retry: bool = False) -> tuple[str, str]:
    token = new_token()
    claim = store.claim(CONSUMER, token, prefer_retry=prefer_retry)
    assert claim.status == "ok"
    return claim.task_id, token


def due_now(store: TaskStore, task_id: str) -> str:
    """The scheduled task made due at once and claimed again: its next attempt's token."""
    store.r.zadd(store.keys.scheduled, {task_id: 0})
    assert store.promote_due(10) == 1
    claimed_id, token = claim_next(store, prefer_retry=True)
    assert claimed_id == task_id
    return token


def delay_ms(store: TaskStore, task_id: str) -> int:
    task = store.get(task_id)
    return task.due_at - task.updated_at


def test_consecutive_429s_wait_longer_each_time_and_spend_no_retry(settings: Settings) -> None:
    runner = unpaced_runner(settings)
    store = runner.store
    task_id, token = claimed(store, f"Slow ({uuid.uuid4().hex}) {RATE_LIMITED}")
    delays = []
    for _ in range(4):
        assert runner.execute(task_id, token, CONSUMER) == "scheduled"
        delays.append(delay_ms(store, task_id))
        token = due_now(store, task_id)
    assert delays == [2000, 4000, 8000, 16000]
    task = store.get(task_id)
    assert (task.retry_count, task.error_type) == (0, "rate_limited")
    assert store.rate_limit_streak(task_id)[0] == 4


def test_retry_after_is_a_floor_not_the_wait(settings: Settings) -> None:
    runner = unpaced_runner(settings)
    task_id, token = claimed(runner.store, f"Asked ({uuid.uuid4().hex}) [[429:9]]")
    runner.execute(task_id, token, CONSUMER)
    assert delay_ms(runner.store, task_id) == 9000, "the provider asked for more than the 2 s backoff"
    other, token = claimed(runner.store, f"Asked briefly ({uuid.uuid4().hex}) [[429:0.5]]")
    runner.execute(other, token, CONSUMER)
    assert delay_ms(runner.store, other) == 2000, "the provider asked for less: the backoff stands"


def test_another_failure_ends_the_run_of_429s(settings: Settings) -> None:
    runner = make_runner(settings)
    task_id, token = claimed(runner.store, f"Mixed ({uuid.uuid4().hex}) [[status:500]]")
    # As schedule_retry.lua leaves a task after three 429s in a row.
    runner.store.r.hset(runner.store.keys.task(task_id), mapping={"rate_limits": 3, "rate_limited_at": 1})
    assert runner.execute(task_id, token, CONSUMER) == "scheduled"
    assert runner.store.get(task_id).error_type == "transient"
    assert runner.store.rate_limit_streak(task_id) == (0, 0)


def test_429s_for_longer_than_rate_limit_max_wait_go_to_the_dlq(settings: Settings) -> None:
    runner = unpaced_runner(settings, rate_limit_max_wait=0.3)
    store = runner.store
    task_id, token = claimed(store, f"Never lifts ({uuid.uuid4().hex}) {RATE_LIMITED}")
    assert runner.execute(task_id, token, CONSUMER) == "scheduled"
    time.sleep(0.5)
    token = due_now(store, task_id)
    assert runner.execute(task_id, token, CONSUMER) == "dlq"
    task = store.get(task_id)
    assert (task.state, task.error_type, task.retry_count) == (State.DLQ, "rate_limited", 0)
    assert "RATE_LIMIT_MAX_WAIT" in task.last_error and "Rate limit reached" in task.last_error
    assert store.rate_limit_streak(task_id) == (0, 0), "a re-driven task starts a new run"


def test_a_completed_task_carries_no_error_but_keeps_its_failed_attempts(settings: Settings) -> None:
    runner = make_runner(settings)
    store = runner.store
    task_id, token = claimed(store, f"Flaky ({uuid.uuid4().hex}) [[fail:1]]")
    assert runner.execute(task_id, token, CONSUMER) == "scheduled"
    token = due_now(store, task_id)
    assert runner.execute(task_id, token, CONSUMER) == "completed"
    raw = store.r.hgetall(store.keys.task(task_id))
    assert raw["state"] == "COMPLETED"
    assert "error_type" not in raw and "last_error" not in raw
    history = [json.loads(e) for e in store.r.lrange(store.keys.history(task_id), 0, -1)]
    assert [e.get("error_type") for e in history if e.get("error")] == ["transient"]


def test_a_429_paces_the_fleet_without_a_configured_limit(settings: Settings, stub: StubLLM) -> None:
    """LLM_RATE_LIMIT_REQUESTS=0: the 429 creates the shared bucket from the observed call rate,
    halved; the next attempt, of another task, finds no token and makes no call."""
    runner = make_runner(settings)
    store = runner.store
    assert not store.r.exists(store.keys.rate_bucket(BUCKET)), "no bucket, no Redis work, before any 429"
    limited, token = claimed(store, f"Limited ({uuid.uuid4().hex}) {RATE_LIMITED}")
    assert runner.execute(limited, token, CONSUMER) == "scheduled"
    bucket = store.r.hgetall(store.keys.rate_bucket(BUCKET))
    assert float(bucket["rate"]) == pytest.approx(0.1) and float(bucket["factor"]) == 0.5
    calls = len(stub.calls())
    other, token = claimed(store, f"Next ({uuid.uuid4().hex})")
    assert runner.execute(other, token, CONSUMER) == "scheduled"
    task = store.get(other)
    assert (task.error_type, task.retry_count) == ("throttled", 0)
    assert len(stub.calls()) == calls, "the throttled attempt made no call"
    assert store.rate_limit_streak(other) == (0, 0), "the fleet's own limit is not the task's 429"


def test_successes_give_the_pace_back_and_then_lift_the_adaptive_limit(settings: Settings) -> None:
    store = make_runner(settings).store
    assert store.adapt_rate(BUCKET, True, observed=2.0) == 0.5
    steps = [store.adapt_rate(BUCKET, False, step=0.25) for _ in range(2)]
    assert steps == [0.75, 1.0]
    assert not store.r.exists(store.keys.rate_bucket(BUCKET)), "whole again: no limit until the next 429"


def test_insufficient_quota_pauses_without_a_retry_and_says_provider_paused_everywhere(settings: Settings) -> None:
    runner = make_runner(settings)
    store = runner.store
    task_id, token = claimed(store, f"Spent ({uuid.uuid4().hex}) [[body:openai/insufficient_quota]]")
    assert runner.execute(task_id, token, CONSUMER) == "released"
    task = store.get(task_id)
    assert (task.state, task.retry_count, task.error_type) == (State.PENDING, 0, "provider_paused")
    assert runner.breaker.state == "open"
    runner.recorder.flush()
    state = store.r.hgetall(store.keys.llm_state)
    assert state["last_error_type"] == "provider_paused" and "current quota" in state["pause_reason"]
    daily = store.r.hgetall(store.keys.llm_daily(day_of(time.time())))
    assert daily.get("error:provider_paused") == "1" and "error:rate_limited" not in daily
    last = json.loads(store.r.lindex(store.keys.history(task_id), -1))
    assert last["error_type"] == "provider_paused"
    assert not store.r.exists(store.keys.rate_bucket(BUCKET)), "spent credits are not a rate limit"


def test_the_guard_pauses_and_puts_the_tasks_back_instead_of_failing_them(settings: Settings) -> None:
    """INPUT_REJECTED_GUARD=3: three different tasks refused with the same message in a row."""
    runner = make_runner(settings)
    store = runner.store
    ids, outcomes = [], []
    for n in range(3):
        task_id, token = claimed(store, f"Fine text {n} ({uuid.uuid4().hex}) [[status:400]]")
        ids.append(task_id)
        outcomes.append(runner.execute(task_id, token, CONSUMER))
    assert outcomes == ["failed", "failed", "released"]
    assert {store.get(i).state for i in ids} == {State.PENDING}, "none left FAILED"
    assert runner.breaker.state == "open"
    reason = store.r.hget(store.keys.llm_state, "pause_reason")
    assert reason.startswith("INPUT_REJECTED_GUARD: 3 tasks") and "stub status 400" in reason
    assert store.get(ids[-1]).error_type == "provider_paused"


def test_the_guard_ignores_different_messages_moderation_and_runs_broken_by_a_success(settings: Settings) -> None:
    runner = make_runner(settings)
    store = runner.store

    def attempt(content: str) -> str:
        task_id, token = claimed(store, f"{content} ({uuid.uuid4().hex})")
        return runner.execute(task_id, token, CONSUMER)

    assert [attempt("[[400]]") for _ in range(3)] == ["failed"] * 3, "each input's own words"
    assert [attempt("[[moderated]]") for _ in range(3)] == ["failed"] * 3, "moderation is about the input"
    assert [attempt("[[status:422]]") for _ in range(2)] == ["failed"] * 2
    assert attempt("[[tag:fine]]") == "completed"
    runner.recorder.flush()  # a success ends the run
    assert attempt("[[status:422]]") == "failed"
    assert runner.breaker.state == "closed"


def test_the_offline_provider_has_no_guard(settings: Settings) -> None:
    runner = make_runner(settings, llm_provider="offline")
    assert runner.guard == 0


def long_text(chars: int) -> str:
    sentence = "The committee met again on Tuesday and agreed on the budget for the coming year. "
    paragraphs = ["".join([sentence] * 6) for _ in range(chars // (len(sentence) * 6) + 1)]
    return "\n\n".join(paragraphs)[:chars]


def test_a_context_too_small_for_chunk_chars_is_split_again(settings: Settings, stub: StubLLM) -> None:
    """The model refuses 3,000 characters (`context_length_exceeded`): the same attempt splits the
    text in pieces half as long and completes, instead of failing the task."""
    runner = make_runner(settings, chunk_chars=4000)
    stub.state.context_chars = 2600
    task_id, token = claimed(runner.store, long_text(3000))
    assert runner.execute(task_id, token, CONSUMER) == "completed"
    statuses = [c["status"] for c in stub.calls()]
    assert statuses[0] == 400 and statuses[1:] == [200, 200, 200], "refused once, then 2 pieces and the combine"
    task = runner.store.get(task_id)
    assert (task.state, task.error_type) == (State.COMPLETED, "")


def test_a_context_refusal_that_splitting_cannot_cure_is_input_rejected(settings: Settings, stub: StubLLM) -> None:
    runner = make_runner(settings, chunk_chars=4000)
    stub.state.context_chars = 300
    task_id, token = claimed(runner.store, long_text(3000))
    assert runner.execute(task_id, token, CONSUMER) == "failed"
    task = runner.store.get(task_id)
    assert (task.state, task.error_type) == (State.FAILED, "input_rejected")
    assert "maximum context length" in task.last_error
    assert len(stub.calls()) == 3, "4000, 2000 and 1000 characters tried; 500 would be under the floor"
