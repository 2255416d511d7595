"""core/states.py's ACTIONS, which the guard scripts are given, the API reports as each task's
`actions` and the dashboard offers: every action in every state is tried on the real scripts and
allowed exactly where the table says, and the table says what the design does (README "States")."""

from __future__ import annotations

import pytest

from core.errors import InvalidTransition
from core.states import ACTIONS, State, actions_for
from tests.core.helpers import Stores, make_in_state


def attempt(stores: Stores, action: str, task_id: str) -> bool:
    """Run `action` on the task: True when the script allowed it, False on its wrong-state refusal."""
    run = {"retry": stores.aio.retry, "cancel": stores.aio.cancel, "delete": stores.aio.delete}[action]
    try:
        stores.run(run(task_id))
    except InvalidTransition:
        return False
    return True


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_each_script_allows_exactly_the_states_of_the_table(stores: Stores, action: str, state: State) -> None:
    task = make_in_state(stores, state)
    assert attempt(stores, action, task.id) is (state in ACTIONS[action])


def test_actions_for_a_state() -> None:
    assert actions_for(State.COMPLETED) == ["delete"]
    assert actions_for(State.ACTIVE) == ["cancel"]
    assert actions_for(State.PENDING) == ["cancel", "delete"]
    assert actions_for(State.DLQ) == ["retry", "delete"]
