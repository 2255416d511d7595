"""The task record's one mapping to and from the Redis hash."""

from __future__ import annotations

from core.states import DELETABLE, RETRYABLE, TERMINAL, State
from core.task import Task


def full_task() -> Task:
    return Task(
        id="abc123",
        task_type="summarize",
        content="héllo\nwörld",
        state=State.SCHEDULED,
        result="sum",
        provider="offline",
        retry_count=2,
        max_retries=3,
        last_error="timeout",
        error_type="transient",
        created_at=1_700_000_000_000,
        updated_at=1_700_000_000_500,
        started_at=1_700_000_000_100,
        finished_at=0,
        due_at=1_700_000_060_000,
        consumer="c1",
        attempt="feedbeef",
    )


def test_round_trip_keeps_every_field() -> None:
    task = full_task()
    raw = task.to_hash()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items())
    assert raw["state"] == "SCHEDULED" and raw["retry_count"] == "2"
    assert Task.from_hash(raw) == task


def test_defaults_round_trip() -> None:
    task = Task(id="x", task_type="summarize", content="")
    back = Task.from_hash(task.to_hash())
    assert back == task
    assert back.state is State.PENDING


def test_unknown_fields_are_ignored() -> None:
    raw = {**full_task().to_hash(), "legacy_field": "1", "colour": "blue"}
    assert Task.from_hash(raw) == full_task()


def test_a_task_stored_before_priorities_reads_as_priority_5() -> None:
    raw = {k: v for k, v in full_task().to_hash().items() if k != "priority"}
    assert Task.from_hash(raw).priority == 5


def test_missing_fields_take_defaults_and_empty_numbers_read_as_zero() -> None:
    task = Task.from_hash({"id": "x", "task_type": "summarize", "content": "c", "state": "DLQ", "due_at": ""})
    assert (task.state, task.due_at, task.retry_count, task.attempt) == (State.DLQ, 0, 0, "")
    assert isinstance(task.state, State)


def test_state_sets() -> None:
    assert {State.COMPLETED, State.FAILED, State.DLQ, State.CANCELLED} == TERMINAL
    assert RETRYABLE <= TERMINAL and State.COMPLETED not in RETRYABLE
    assert State.ACTIVE not in DELETABLE and DELETABLE | {State.ACTIVE} == set(State)


def test_a_new_task_stores_only_what_is_not_a_default() -> None:
    """`new_hash`: what create_task writes; the rest reads back as its default."""
    task = Task(id="t1", task_type="summarize", content="text", max_retries=3, params='{"n": 1}')
    stored = task.new_hash()
    assert stored == {"id": "t1", "owner": "", "priority": "5", "task_type": "summarize", "state": "PENDING",
                      "content": "text", "retry_count": "0", "max_retries": "3", "params": '{"n": 1}'}  # fmt: skip
    assert Task.from_hash(stored) == task
