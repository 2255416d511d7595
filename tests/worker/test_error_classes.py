"""Every error class, end to end through one attempt (`Runner.execute`, real Redis, the loopback
stand-in, the real shared breaker): the state the task is left in, its retry count and error
type, the audit trail's entry, and when its next attempt comes."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import pytest
import redis

from consumer.consumer import BreakerGate
from core.breaker import SharedBreaker
from core.settings import Settings
from core.states import State
from core.store import TaskStore, new_token
from core.task import Task
from tests.core.helpers import queued
from tests.stub_llm import StubLLM
from worker.runner import Runner

CONSUMER = "c1"
PAUSE = 120.0


@dataclass(frozen=True)
class Case:
    """One error class: what the stand-in answers, and what must become of the task.

    `due_ms` bounds the delay until the next attempt (due_at - the failure's time), None when the
    task waits in no schedule (finished, or back at the head of the queue)."""

    content: str
    outcome: str
    state: State
    retry_count: int
    error_type: str
    due_ms: tuple[int, int] | None
    says: str  # in last_error and in the audit trail's entry


# RETRY_BACKOFF_BASE=2: the first retry waits 1-2 s (half fixed, half jitter); so does a first 429
# (RATE_LIMIT_BACKOFF_BASE=2, RATE_LIMIT_JITTER=0.5), unless its Retry-After asks for longer.
CASES = {
    "transient 500": Case("[[status:500]]", "scheduled", State.SCHEDULED, 1, "transient", (1000, 2000), "HTTP 500"),
    "transient 502 raw": Case("[[status:502]][[raw:model overloaded]]", "scheduled", State.SCHEDULED, 1, "transient",
                              (1000, 2000), "raw: model overloaded"),
    "timeout": Case("[[delay:2]]", "scheduled", State.SCHEDULED, 1, "transient", (1000, 2000), "timeout"),
    "hang (trickle)": Case("[[trickle:5]]", "scheduled", State.SCHEDULED, 1, "transient", (1000, 2000),
                           "soft time limit"),
    "200 with error": Case("[[error200]]", "scheduled", State.SCHEDULED, 1, "transient", (1000, 2000), "upstream"),
    "200 without choices": Case("[[nochoices]]", "scheduled", State.SCHEDULED, 1, "transient", (1000, 2000),
                                "without choices"),
    "malformed json": Case("[[badjson]]", "scheduled", State.SCHEDULED, 1, "transient", (1000, 2000), "not a JSON"),
    "429 retry-after": Case("[[429:5]]", "scheduled", State.SCHEDULED, 0, "rate_limited", (5000, 5000), "HTTP 429"),
    "503 retry-after": Case("[[status:503]][[retry_after:7]]", "scheduled", State.SCHEDULED, 0, "rate_limited",
                            (7000, 7000), "HTTP 503"),
    "429 without retry-after": Case("[[body:openai/rate_limit_exceeded]]", "scheduled", State.SCHEDULED, 0,
                                    "rate_limited", (1000, 2000), "Rate limit reached"),
    "insufficient_quota (a 429)": Case("[[body:openai/insufficient_quota]]", "released", State.PENDING, 0,
                                       "provider_paused", None, "exceeded your current quota"),
    "unknown model as a 400": Case("[[body:litellm/invalid_model]]", "dlq", State.DLQ, 0, "provider_problem", None,
                                   "Invalid model name"),
    "refused key as a 400": Case("[[body:litellm/no_connected_db]]", "released", State.PENDING, 0,
                                 "provider_paused", None, "No connected db"),
    "context length": Case("[[body:openai/context_length_exceeded]]", "failed", State.FAILED, 0, "input_rejected",
                           None, "maximum context length"),
    "400 rejected": Case("[[400]]", "failed", State.FAILED, 0, "input_rejected", None, "HTTP 400"),
    "413 too long": Case("[[status:413]]", "failed", State.FAILED, 0, "input_rejected", None, "HTTP 413"),
    "403 moderation": Case("[[moderated]]", "failed", State.FAILED, 0, "input_rejected", None, "input flagged"),
    "404 unknown model": Case("[[status:404]]", "dlq", State.DLQ, 0, "provider_problem", None, "HTTP 404"),
    "403 forbidden": Case("[[status:403]]", "dlq", State.DLQ, 0, "provider_problem", None, "HTTP 403"),
    "401 bad key": Case("[[status:401]]", "released", State.PENDING, 0, "provider_paused", None, "HTTP 401"),
    "402 no credits": Case("[[status:402]]", "released", State.PENDING, 0, "provider_paused", None, "HTTP 402"),
}  # fmt: skip


@pytest.fixture
def settings(redis_url: str, key_prefix: str, stub: StubLLM, real_redis: redis.Redis) -> Settings:
    return Settings(
        redis_url=redis_url, redis_key_prefix=key_prefix, openrouter_api_key="test-key", openrouter_base_url=stub.url,
        max_retries=2, retry_backoff_base=2, openrouter_timeout=0.5, celery_task_soft_time_limit=1,
        celery_task_time_limit=5, provider_pause_seconds=PAUSE, rate_limit_backoff_base=2, rate_limit_jitter=0.5,
    )  # fmt: skip


@pytest.fixture
def runner(settings: Settings) -> Runner:
    return Runner(settings)


def claimed(store: TaskStore, content: str, retries: int = 2) -> tuple[str, str]:
    store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content=content, max_retries=retries))
    token = new_token()
    claim = store.claim(CONSUMER, token, prefer_retry=False)
    assert claim.status == "ok"
    return claim.task_id, token


@pytest.mark.parametrize("name", list(CASES))
def test_each_error_class_leaves_its_state_and_next_attempt(runner: Runner, name: str) -> None:
    case = CASES[name]
    task_id, token = claimed(runner.store, f"Text for {name} ({uuid.uuid4().hex}). {case.content}")
    assert runner.execute(task_id, token, CONSUMER) == case.outcome
    task = runner.store.get(task_id)
    assert (task.state, task.retry_count, task.error_type) == (case.state, case.retry_count, case.error_type)
    assert case.says in task.last_error
    last = json.loads(runner.store.r.lindex(runner.store.keys.history(task_id), -1))
    assert (last["to"], last["error_type"]) == (case.state.value, case.error_type) and case.says in last["error"]
    if case.due_ms is None:
        assert runner.store.r.zscore(runner.store.keys.scheduled, task_id) is None
    else:
        low, high = case.due_ms
        assert low <= task.due_at - task.updated_at <= high
        assert runner.store.r.zscore(runner.store.keys.scheduled, task_id) == task.due_at
    assert runner.store.inflight_count(CONSUMER) == 0


@pytest.mark.parametrize("status", [401, 402])
def test_401_402_pause_every_consumer_until_the_pause_ends(runner: Runner, settings: Settings, status: int) -> None:
    """The task goes back to the head of the queue (no retry spent) and the shared breaker stays
    open for PROVIDER_PAUSE_SECONDS: the next attempt is the probe after the pause."""
    task_id, token = claimed(runner.store, f"Paused ({uuid.uuid4().hex}) [[status:{status}]]")
    assert runner.execute(task_id, token, CONSUMER) == "released"
    assert queued(runner.store.r, runner.store.keys)[0] == task_id
    seen_by_a_consumer = SharedBreaker(settings, redis.Redis.from_url(settings.redis_url))
    assert seen_by_a_consumer.state == "open"
    assert PAUSE - 2 <= seen_by_a_consumer.seconds_left() <= PAUSE
    assert BreakerGate(seen_by_a_consumer, ttl=0).state() == "open", "consumers take no work"
    state = runner.store.r.hgetall(runner.store.keys.llm_state)
    assert f"HTTP {status}" in state["pause_reason"] and int(state["paused_until"]) >= (time.time() + PAUSE - 2) * 1000
    seen_by_a_consumer.close()
    assert BreakerGate(seen_by_a_consumer, ttl=0).state() == "closed", "an operator's reset ends the pause"


def test_out_of_retries_a_transient_error_goes_to_the_dlq(runner: Runner) -> None:
    task_id, token = claimed(runner.store, f"Last try ({uuid.uuid4().hex}) [[status:500]]", retries=0)
    assert runner.execute(task_id, token, CONSUMER) == "dlq"
    task = runner.store.get(task_id)
    assert (task.state, task.error_type, task.due_at) == (State.DLQ, "transient", 0)


def test_fleet_rate_limit_reschedules_without_a_call_or_a_retry(settings: Settings, stub: StubLLM) -> None:
    runner = Runner(settings.model_copy(update={"llm_rate_limit_requests": 1, "llm_rate_limit_interval": 10.0}))
    first, token = claimed(runner.store, f"First ({uuid.uuid4().hex})")
    assert runner.execute(first, token, CONSUMER) == "completed"
    second, token = claimed(runner.store, f"Second ({uuid.uuid4().hex})")
    assert runner.execute(second, token, CONSUMER) == "scheduled"
    task = runner.store.get(second)
    assert (task.state, task.retry_count, task.error_type) == (State.SCHEDULED, 0, "throttled")
    assert 9000 <= task.due_at - task.updated_at <= 20000, "about when a token is due, spread over one interval"
    assert len(stub.calls()) == 1, "the throttled attempt made no call"
    assert runner.breaker.state == "closed"
