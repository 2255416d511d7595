"""The transition scripts (one Lua file each) as Redis runs them: on Redis 7 and later as one
function library (`_lib.lua` once, each script a function; FUNCTION LOAD once per server, FCALL per
call), else each with the `_lib.lua` helpers it uses prepended (EVALSHA; Redis 6.2). A script reads
KEYS and ARGV alike in both: a function is given them as its two arguments."""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

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


@cache
def sha(name: str) -> str:
    """The sha1 EVALSHA names script `name` by (its full source, helpers included)."""
    return hashlib.sha1(source(name).encode()).hexdigest()


@cache
def library() -> tuple[str, str]:
    """(name, source) of the function library: `_lib.lua` once, then each script registered as the
    function `function_name(script)`, its text as it is. The name carries a digest of the sources,
    so a server holds each version once and processes of two versions side by side each call
    their own (FUNCTION LOAD refuses a second library of the same name)."""
    lib = (_DIR / f"{LIB}.lua").read_text()
    scripts = {name: (_DIR / f"{name}.lua").read_text() for name in names()}
    name = _library_name(lib, scripts)
    parts = [f"#!lua name={name}\n", lib]
    for script, text in scripts.items():
        parts.append(f"\nredis.register_function('{name}_{script}', function(KEYS, ARGV)\n{text}\nend)\n")
    return name, "".join(parts)


def _library_name(lib: str, scripts: dict[str, str]) -> str:
    digest = hashlib.sha1((lib + "".join(f"\0{n}\0{t}" for n, t in scripts.items())).encode()).hexdigest()
    return f"atf_{digest[:12]}"


def function_name(script: str) -> str:
    """The function FCALL names for transition `script`."""
    return f"{library()[0]}_{script}"
