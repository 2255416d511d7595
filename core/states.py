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
CANCELLABLE = frozenset({State.PENDING, State.SCHEDULED, State.ACTIVE})
DELETABLE = frozenset(State) - {State.ACTIVE}

# What a client may do to a task in each state, by action: passed to the guards of retry_task,
# cancel_task and delete_task (tests/core/test_actions.py tries every action in every state), so
# the API's 409 for any other state, the `actions` every task carries and the dashboard's buttons
# all come from this one table.
ACTIONS: dict[str, frozenset[State]] = {"retry": RETRYABLE, "cancel": CANCELLABLE, "delete": DELETABLE}


def actions_for(state: State) -> list[str]:
    """The actions the state allows, in ACTIONS' order."""
    return [action for action, states in ACTIONS.items() if state in states]
