"""Loads the transition scripts (one Lua file each, with the `_lib.lua` helpers it uses prepended)
and registers them."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

_DIR = Path(__file__).with_name("scripts")
LIB = "_lib"
_DEFINES = re.compile(r"local (?:function )?([A-Za-z_]\w*)")
_COMMENT = re.compile(r"--[^\n]*")  # a name in a comment is no use of it


@cache
def _lib_parts() -> tuple[str, tuple[tuple[str, str], ...]]:
    """`_lib.lua` as its head (the comment above its first definition) and its top-level
    definitions in order, each (name, text): the comment lines above it, then the definition up
    to the next one."""
    head, defs, waiting = "", [], ""  # waiting: comments and blank lines, for the next definition
    for line in (_DIR / f"{LIB}.lua").read_text().splitlines(keepends=True):
        found = _DEFINES.match(line)
        if found:
            defs.append((found.group(1), waiting + line))
            waiting = ""
        elif not defs:
            head += line
        elif line.startswith("--") or not line.strip():
            waiting += line
        else:  # the current definition goes on (its body; a blank line inside it came first)
            defs[-1] = (defs[-1][0], defs[-1][1] + waiting + line)
            waiting = ""
    return head, tuple(defs)


@cache
def helpers(name: str) -> str:
    """The part of `_lib.lua` script `name` runs on every call: its head and the definitions the
    script uses, directly or through another, in their order there. A script defines no helper it
    never calls: each one defined is a closure Lua builds on every call."""
    head, defs = _lib_parts()
    used: set[str] = set()
    code_of = (_DIR / f"{name}.lua").read_text()
    grew = True
    while grew:
        grew = False
        for helper, code in defs:
            if helper not in used and re.search(rf"\b{helper}\b", _COMMENT.sub("", code_of)):
                used.add(helper)
                code_of += code
                grew = True
    return head + "".join(code for helper, code in defs if helper in used)


@cache
def source(name: str) -> str:
    """Full source of one script: the shared helpers it uses, then the transition itself."""
    return helpers(name) + "\n" + (_DIR / f"{name}.lua").read_text()


def names() -> list[str]:
    """Every transition script shipped, by file name."""
    return sorted(p.stem for p in _DIR.glob("*.lua") if p.stem != LIB)


def register_all(client: Any) -> dict[str, Any]:
    """Script objects bound to `client` (sync or asyncio); they EVALSHA and reload on NOSCRIPT."""
    return {name: client.register_script(source(name)) for name in names()}
