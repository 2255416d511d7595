"""bench/profile_worker.py's reading of py-spy's collapsed stacks."""

from __future__ import annotations

from bench.profile_worker import collapsed_costs


def test_own_and_inclusive_samples() -> None:
    raw = "main (a.py:1);run (a.py:5);send (b.py:9) 30\nmain (a.py:1);run (a.py:5) 10\nmain (a.py:1);poll (c.py:2) 5\n"
    own, inclusive, total = collapsed_costs(raw + "garbage\n")
    assert total == 45
    assert own == {"send (b.py:9)": 30, "run (a.py:5)": 10, "poll (c.py:2)": 5}
    assert inclusive["main (a.py:1)"] == 45 and inclusive["run (a.py:5)"] == 40


def test_frames_are_grouped_by_package() -> None:
    from bench.profile_worker import package

    assert package("send (/x/.venv/lib/python3.11/site-packages/redis/connection.py:1349)") == "redis"
    assert package("send (redis/connection.py:1349)") == "redis"
    assert package("execute (worker/runner.py:58)") == "worker"
    assert package("uuid4 (uuid.py:723)") == "uuid (stdlib)"
