"""core/lua.py: each script gets the `_lib.lua` helpers it uses, and only those (each helper a
script defines is a closure Lua builds on every call)."""

from __future__ import annotations

import re

from core.lua import _lib_parts, helpers, names, source


def defined(text: str) -> set[str]:
    return set(re.findall(r"^local (?:function )?(\w+)", text, re.M))


def test_a_script_gets_only_what_it_calls() -> None:
    assert defined(helpers("take_token")) == {"now_ms"}
    assert defined(helpers("note_rejection")) == set()
    # Through other helpers: complete_task calls left_active, which may release an owner's hold.
    assert {"left_active", "release_hold", "hold_of", "take_turn"} <= defined(helpers("complete_task"))
    assert "next_turn" not in defined(helpers("complete_task")) and "withdraw" not in defined(helpers("claim_task"))


def test_every_helper_a_script_names_is_defined_before_the_script() -> None:
    every = defined("".join(code for _, code in _lib_parts()[1]))
    for name in names():
        body = source(name)[len(helpers(name)) :]
        called = {n for n in every if re.search(rf"\b{n}\b", re.sub(r"--[^\n]*", "", body))}
        assert called <= defined(helpers(name)), name


def test_the_helpers_keep_their_order_and_comments() -> None:
    lib = "".join(code for _, code in _lib_parts()[1])
    text = helpers("claim_task")
    assert text.startswith(_lib_parts()[0])
    assert "-- The turn a claim takes now" in text  # next_turn's comment comes with it
    positions = [lib.index(code) for helper, code in _lib_parts()[1] if code in text]
    assert positions == sorted(positions)
