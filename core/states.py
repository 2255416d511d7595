"""Task states and the named sets the transitions are guarded by."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a task is in its life; see the README's state diagram."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    SCHEDULED = "SCHEDULED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DLQ = "DLQ"
    CANCELLED = "CANCELLED"


TERMINAL = frozenset({State.COMPLETED, State.FAILED, State.DLQ, State.CANCELLED})
RETRYABLE = frozenset({State.FAILED, State.DLQ, State.CANCELLED})
DELETABLE = frozenset(State) - {State.ACTIVE}
