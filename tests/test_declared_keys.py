"""The check every fakeredis test runs under (tests/declared_keys.py) catches a script that builds
a key, through EVAL and through a function, and lets one that names its keys run."""

from __future__ import annotations

import fakeredis
import pytest

BUILDS_A_KEY = "#!lua name=t\nredis.register_function('f', function(K, A) return redis.call('GET', K[1] .. 'x') end)"


def test_a_script_that_builds_a_key_fails_and_one_that_names_it_runs() -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    assert r.eval("return redis.call('SET', KEYS[1], '1')", 1, "task:1")
    with pytest.raises(AssertionError, match="task:2"):
        r.eval("return redis.call('SET', 'task:' .. ARGV[1], '1')", 1, "task:1", "2")
    r.function_load(BUILDS_A_KEY)
    with pytest.raises(AssertionError, match="task:1x"):
        r.fcall("f", 1, "task:1")
    assert r.eval("return redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')", 2, "a", "b") is None
