"""Every key a script touches must be one it was given in KEYS (ARCHITECTURE §1b): a Redis Cluster
checks only that they share a slot, and Dragonfly refuses an undeclared one by default. On
fakeredis this is checked for every script any test runs: the keys each command a script sends
names are compared with the keys of the script's call, and one not among them fails the script
(and so the test) with the key's name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fakeredis._socket._base import BaseFakeSocket
from fakeredis.commands_mixins.scripting_mixin import ScriptingCommandsMixin

# Which arguments of a command are keys, for the commands our scripts send: the first, unless
# named here (a count of leading keys; None: every argument).
_KEY_ARGS: dict[str, int | None] = {"del": None, "lmove": 2, "publish": 0, "time": 0}


def keys_named(command: str, args: list[Any]) -> list[bytes]:
    count = _KEY_ARGS.get(command.lower(), 1)
    return [bytes(a) for a in (args if count is None else args[:count])]


@contextmanager
def checked() -> Iterator[None]:
    """While open, a script that touches a key outside its KEYS raises."""
    declared: list[set[bytes]] = []
    run, fcall, evaluate = BaseFakeSocket._run_command, ScriptingCommandsMixin._fcall, ScriptingCommandsMixin.eval

    def with_keys(call: Callable[..., Any], keys: tuple[bytes, ...]) -> Any:
        declared.append(set(keys))
        try:
            return call()
        finally:
            declared.pop()

    def checked_fcall(self: Any, name: str, function: bytes, numkeys: bytes, keys_and_args: tuple[bytes, ...],
                      read_only_command: bool) -> Any:  # fmt: skip
        keys = keys_and_args[: int(numkeys)]
        return with_keys(lambda: fcall(self, name, function, numkeys, keys_and_args, read_only_command), keys)

    def checked_eval(self: Any, script: bytes, numkeys: int, *keys_and_args: bytes) -> Any:
        return with_keys(lambda: evaluate(self, script, numkeys, *keys_and_args), keys_and_args[: int(numkeys)])

    def checked_run(self: Any, func: Any, sig: Any, args: list[Any], from_script: bool) -> Any:
        if from_script and declared:
            undeclared = [k for k in keys_named(sig.name, args) if k not in declared[-1]]
            assert not undeclared, f"a script's {sig.name} touched {undeclared!r}, not in its KEYS"
        return run(self, func, sig, args, from_script)

    BaseFakeSocket._run_command = checked_run  # type: ignore[method-assign]
    ScriptingCommandsMixin._fcall = checked_fcall  # type: ignore[method-assign]
    ScriptingCommandsMixin.eval = checked_eval  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseFakeSocket._run_command = run  # type: ignore[method-assign]
        ScriptingCommandsMixin._fcall = fcall  # type: ignore[method-assign]
        ScriptingCommandsMixin.eval = evaluate  # type: ignore[method-assign]
