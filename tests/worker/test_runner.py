"""One attempt end to end without Celery: real Redis, the loopback stand-in, the real breaker."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from core.keys import Keys
from core.settings import Settings
from core.states import State
from core.store import TaskStore, new_token
from core.task import Task
from tasktypes.summarize import Summarize
from tests.core.helpers import queued
from tests.stub_llm import StubLLM
from worker.runner import Runner

CONSUMER = "c1"



@pytest.fixture
def settings(redis_url: str, key_prefix: str, stub: StubLLM, real_redis: redis.Redis) -> Settings:
    return Settings(
        redis_url=redis_url, redis_key_prefix=key_prefix, openrouter_api_key="test-key",
        openrouter_base_url=stub.url, max_retries=2, circuit_breaker_fail_max=3,
    )


@pytest.fixture
def runner(settings: Settings) -> Runner:
    return Runner(settings)


def claimed(store: TaskStore, content: str, task_type: str = "summarize", retries: int = 2) -> tuple[str, str]:
    """A task as a consumer leaves it: ACTIVE under a fresh token in this consumer's in-flight list."""
    store.create(Task(id=str(uuid.uuid4()), task_type=task_type, content=content, max_retries=retries))
    token = new_token()
    claim = store.claim(CONSUMER, token, prefer_retry=False)
    assert claim.status == "ok"
    return claim.task_id, token


def test_success_stores_the_answer(runner: Runner) -> None:
    task_id, token = claimed(runner.store, "[[tag:ok]] text")
    assert runner.execute(task_id, token, CONSUMER) == "completed"
    task = runner.store.get(task_id)
    assert (task.state, task.result, task.provider, task.attempt) == (State.COMPLETED, "summary:ok", "openrouter", "")
    assert runner.store.inflight_count(CONSUMER) == 0


@pytest.mark.parametrize(
    ("content", "outcome", "state", "retries", "error_type"),
    [
        ("[[400]] refused", "failed", State.FAILED, 0, "input_rejected"),
        ("[[status:500]] down", "scheduled", State.SCHEDULED, 1, "transient"),
        ("[[status:404]] unknown model", "dlq", State.DLQ, 0, "provider_problem"),
        ("[[status:401]] bad key", "released", State.PENDING, 0, "provider_paused"),
        ("[[429:5]] slow down", "scheduled", State.SCHEDULED, 0, "rate_limited"),
    ],
)
def test_each_failure_commits_one_transition(
    runner: Runner, content: str, outcome: str, state: State, retries: int, error_type: str
) -> None:
    task_id, token = claimed(runner.store, content)
    assert runner.execute(task_id, token, CONSUMER) == outcome
    task = runner.store.get(task_id)
    assert (task.state, task.retry_count, task.error_type) == (state, retries, error_type)
    assert task.last_error
    assert runner.store.inflight_count(CONSUMER) == 0


def test_rate_limited_task_waits_at_least_retry_after(settings: Settings) -> None:
    """Retry-After is a floor under the rate-limit backoff (30 s less up to a quarter by default).
    A generous fleet limit keeps the first 429's fleet pacing from throttling the second task."""
    runner = Runner(settings.model_copy(update={"llm_rate_limit_requests": 100_000}))
    task_id, token = claimed(runner.store, "[[429:45]] slow down")
    runner.execute(task_id, token, CONSUMER)
    task = runner.store.get(task_id)
    assert task.due_at - task.updated_at == 45000
    short, token = claimed(runner.store, "[[429:5]] slow down, briefly")
    runner.execute(short, token, CONSUMER)
    task = runner.store.get(short)
    assert 22500 <= task.due_at - task.updated_at <= 30000


def test_out_of_retries_goes_to_the_dlq(runner: Runner) -> None:
    task_id, token = claimed(runner.store, "[[status:503]] down", retries=0)
    assert runner.execute(task_id, token, CONSUMER) == "dlq"
    assert runner.store.get(task_id).state == State.DLQ


def test_stale_attempt_changes_nothing(runner: Runner, stub: StubLLM) -> None:
    task_id, token = claimed(runner.store, "[[tag:x]] text")
    assert runner.execute(task_id, "not-the-token", CONSUMER) == "stale"
    assert runner.store.get(task_id).state == State.ACTIVE
    assert stub.calls() == [], "a stale attempt never calls the provider"
    assert runner.execute(task_id, token, CONSUMER) == "completed"
    assert runner.execute(task_id, token, CONSUMER) == "stale", "a redelivered message is harmless"


def test_a_type_this_worker_does_not_know_goes_to_the_dlq_at_once(runner: Runner, stub: StubLLM) -> None:
    """TASK_TYPE_MODULES differs between the API and this worker: retrying cannot help, an
    operator can (load the module, then retry the task)."""
    task_id, token = claimed(runner.store, "text", task_type="nonesuch", retries=3)
    assert runner.execute(task_id, token, CONSUMER) == "dlq"
    task = runner.store.get(task_id)
    assert (task.error_type, task.retry_count) == ("provider_problem", 0)
    assert "no task type 'nonesuch'" in task.last_error and "TASK_TYPE_MODULES" in task.last_error
    assert stub.calls() == []


def hgetall_calls(r: redis.Redis) -> int:
    stats: dict[str, dict[str, int]] = r.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


@pytest.mark.parametrize(("content", "retries", "outcome"), [
    ("[[tag:ok]] text", 2, "completed"), ("[[status:500]] text", 2, "scheduled"), ("[[status:500]] text", 0, "dlq"),
])  # fmt: skip
def test_the_fields_of_the_claim_spare_the_attempt_its_read(
    runner: Runner, real_redis: redis.Redis, content: str, retries: int, outcome: str
) -> None:
    """With what the claim returned, the worker reads nothing of the task, and still honours
    its retry budget."""
    task = runner.store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content=content, max_retries=retries))
    token = new_token()
    claim = runner.store.claim(CONSUMER, token, prefer_retry=False)
    assert claim.task_id == task.id and claim.fields is not None
    before = hgetall_calls(real_redis)
    assert runner.execute(task.id, token, CONSUMER, claim.fields) == outcome
    assert hgetall_calls(real_redis) == before
    assert runner.store.inflight_count(CONSUMER) == 0


def test_an_attempt_with_fields_that_went_stale_since_the_claim_changes_nothing(runner: Runner) -> None:
    task = runner.store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="[[tag:ok]] t", max_retries=2))
    token = new_token()
    claim = runner.store.claim(CONSUMER, token, prefer_retry=False)
    runner.store.release(task.id, CONSUMER, token, "handed back", "shutdown")  # the consumer left meanwhile
    assert runner.execute(task.id, token, CONSUMER, claim.fields) == "stale"
    assert (runner.store.get(task.id).state, runner.store.get(task.id).result) == (State.PENDING, "")


@pytest.mark.parametrize(("waited_s", "calls"), [(0, 1), (5, 0)])
def test_an_attempt_that_waited_for_a_thread_reads_its_task_before_paying_for_a_call(
    runner: Runner, stub: StubLLM, waited_s: int, calls: int
) -> None:
    """A prefetched attempt (WORKER_PREFETCH) whose claim is seconds old checks it is still
    current before the call; a fresh one trusts its fields (its late report is refused)."""
    task = runner.store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="[[tag:ok]] t", max_retries=2))
    token = new_token()
    claim = runner.store.claim(CONSUMER, token, prefer_retry=False)
    assert claim.fields is not None
    fields = {**claim.fields, "started_at": str(int(claim.fields["started_at"]) - waited_s * 1000)}
    runner.store.release(task.id, CONSUMER, token, "handed back", "shutdown")  # taken back while it waited
    assert runner.execute(task.id, token, CONSUMER, fields) == "stale"
    assert len(stub.state.calls()) == calls
    assert runner.store.get(task.id).state == State.PENDING


def test_a_library_error_in_the_attempt_is_settled_as_internal(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py 8's errors carry an `error_type` enum of their own; the attempt must still be
    settled (it once escaped, leaving the task ACTIVE until its lease ran out)."""

    def crowded(*_: object) -> None:
        raise redis.exceptions.MaxConnectionsError("Too many connections")

    monkeypatch.setattr(Summarize, "run", crowded)
    task_id, token = claimed(runner.store, "text")
    assert runner.execute(task_id, token, CONSUMER) == "scheduled"
    task = runner.store.get(task_id)
    assert (task.state, task.error_type, task.retry_count) == (State.SCHEDULED, "internal", 1)
    assert "Too many connections" in task.last_error


def trip(runner: Runner) -> list[str]:
    """Three provider failures (circuit_breaker_fail_max): what became of each attempt."""
    outcomes = []
    for i in range(3):
        task_id, token = claimed(runner.store, f"[[status:500]] outage {i}")
        outcomes.append(runner.execute(task_id, token, CONSUMER))
    return outcomes


def test_the_failure_that_opens_the_breaker_spends_no_retry(runner: Runner) -> None:
    assert trip(runner) == ["scheduled", "scheduled", "released"]
    assert runner.breaker.state == "open"
    assert runner.store.get(queued(runner.store.r, runner.store.keys)[0]).retry_count == 0


def test_a_failed_probe_spends_no_retry(settings: Settings, stub: StubLLM) -> None:
    runner = Runner(settings.model_copy(update={"circuit_breaker_reset_timeout": 0.2}))
    trip(runner)
    calls = len(stub.calls())
    time.sleep(1.1)  # past the reset timeout (pybreaker keeps opened_at in whole seconds): a probe is due
    task_id, token = claimed(runner.store, "[[tag:unused]] behind the released task")
    assert runner.execute(task_id, token, CONSUMER) == "released"
    assert len(stub.calls()) == calls + 1, "the probe reached the provider"
    assert runner.breaker.state == "open"
    assert runner.store.get(task_id).retry_count == 0


def test_open_breaker_puts_the_task_back_without_spending_a_retry(runner: Runner, stub: StubLLM) -> None:
    trip(runner)
    assert runner.breaker.state == "open"
    calls = len(stub.calls())

    task_id, token = claimed(runner.store, "[[tag:later]] waits")
    assert runner.execute(task_id, token, CONSUMER) == "released"

    task = runner.store.get(task_id)
    assert (task.state, task.retry_count, task.error_type) == (State.PENDING, 0, "circuit_open")
    assert queued(runner.store.r, Keys(runner.store.keys.prefix))[0] == task_id
    assert len(stub.calls()) == calls
    runner.breaker.close()
    assert runner.breaker.state == "closed"
