"""How the harness reads Redis MONITOR output (bench/trace.py): which lines it parses and how
it counts round trips (a MULTI…EXEC block is one)."""

from __future__ import annotations

from bench.trace import LINE, round_trip


def test_monitor_lines_give_the_client_and_the_command() -> None:
    line = '1795246888.989172 [0 127.0.0.1:59582] "EVALSHA" "d4ca" "9" "x]" "y"'
    match = LINE.match(line)
    assert match is not None and match.groups() == ("127.0.0.1:59582", "EVALSHA")
    lua = LINE.match('1795246888.99 [1 lua] "HINCRBY" "k" "f" "1"')
    assert lua is not None and lua.group(1) == "lua"
    assert LINE.match("OK") is None


def test_a_transaction_is_one_round_trip_per_client() -> None:
    in_multi: set[str] = set()
    sent = [("a", "multi"), ("b", "get"), ("a", "zadd"), ("a", "hset"), ("b", "multi"), ("a", "exec"), ("a", "get")]
    sent += [("b", "discard"), ("b", "set")]
    trips = [round_trip(in_multi, client, command) for client, command in sent]
    assert trips == [1, 1, 0, 0, 1, 0, 1, 0, 1]
    assert in_multi == set()
