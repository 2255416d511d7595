"""The split of a worker slot's cycle, on a made-up schedule whose parts are known."""

from __future__ import annotations

import pytest

from bench.slot_cycle import cycle_parts


def test_a_slot_cycle_splits_into_dispatch_call_and_refill() -> None:
    # Two slots; each task: claimed, the call arrives 5 ms later, finishes 200 ms after that, and
    # the freed slot's next claim comes 3 ms after the finish.
    rows, starts = [], [0.0, 0.001]
    for _ in range(20):
        for slot, claimed in enumerate(starts):
            rows.append((claimed, claimed + 0.005, claimed + 0.205))
            starts[slot] = claimed + 0.208
    parts = list(cycle_parts(rows, concurrency=2).values())
    assert all(v == pytest.approx(5.0) for v in parts[0])
    assert all(v == pytest.approx(200.0) for v in parts[1])
    assert all(v == pytest.approx(3.0) for v in parts[2])
