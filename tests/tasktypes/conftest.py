"""Runner-level fixtures for the task types: one attempt at a time through the real `Runner` (real
Redis, the real breaker and provider) against the loopback stand-in; no Celery, no processes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis

import tasktypes
from core.settings import Settings
from core.states import State
from core.store import TaskStore, new_token
from core.task import Task
from tests.integration.stack import wait_until
from tests.stub_llm import StubLLM
from worker.runner import Runner

CONSUMER = "c1"
MAIN_MODEL = "main/model"



@pytest.fixture
def settings(redis_url: str, key_prefix: str, stub: StubLLM, real_redis: redis.Redis) -> Settings:
    """A networked worker's settings: the stand-in as provider, pieces of 1000 characters, one
    model (no fallback: a failed call fails the attempt), quick retries."""
    return Settings(
        redis_url=redis_url, redis_key_prefix=key_prefix, openrouter_api_key="test-key",
        openrouter_base_url=stub.url, openrouter_model=MAIN_MODEL, chunk_chars=1000,
        retry_backoff_base=0.01, retry_backoff_max=0.05, max_retries=2,
    )  # fmt: skip


@pytest.fixture
def runner(settings: Settings) -> Runner:
    return Runner(settings)


def submit(store: TaskStore, name: str, body: dict[str, Any], max_retries: int = 2) -> str:
    """A task stored as the API stores it: the type's input model checks `body`, then its content
    and params are what the type says they are."""
    task_type = tasktypes.get(name)
    assert task_type is not None, name
    checked = task_type.Create.model_validate(body)
    params = task_type.params_of(checked)
    task = Task(id=str(uuid.uuid4()), task_type=name, content=task_type.content_of(checked),
                params=json.dumps(params, ensure_ascii=False) if params else "", max_retries=max_retries)  # fmt: skip
    return store.create(task).id


def attempt(runner: Runner, task_id: str) -> str:
    """One attempt of the task, as a consumer and a worker run it: what became of it."""
    token = new_token()
    claim = runner.store.claim(CONSUMER, token, prefer_retry=True)
    assert (claim.status, claim.task_id) == ("ok", task_id)
    return runner.execute(task_id, token, CONSUMER)


def run_to_end(runner: Runner, task_id: str, attempts: int = 5) -> list[str]:
    """Attempts until the task settles, each retry promoted once due (as the scheduler does): what
    became of each. The task is PENDING, or SCHEDULED by an earlier attempt."""
    outcomes: list[str] = []
    while len(outcomes) < attempts and (not outcomes or outcomes[-1] == "scheduled"):
        if runner.store.get(task_id).state == State.SCHEDULED:
            wait_until(lambda: runner.store.promote_due(10), 10, interval=0.01, what="the retry to come due")
        outcomes.append(attempt(runner, task_id))
    return outcomes


def bodies(stub: StubLLM) -> list[dict[str, Any]]:
    """The request body of every call the stand-in got, in order."""
    return [call["request"] for call in stub.calls()]
