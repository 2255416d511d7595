"""Loads the transition scripts (one Lua file each, with `_lib.lua` prepended) and registers them."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

_DIR = Path(__file__).with_name("scripts")
LIB = "_lib"


@cache
def source(name: str) -> str:
    """Full source of one script: the shared helpers, then the transition itself."""
    return (_DIR / f"{LIB}.lua").read_text() + "\n" + (_DIR / f"{name}.lua").read_text()


def names() -> list[str]:
    """Every transition script shipped, by file name."""
    return sorted(p.stem for p in _DIR.glob("*.lua") if p.stem != LIB)


def register_all(client: Any) -> dict[str, Any]:
    """Script objects bound to `client` (sync or asyncio); they EVALSHA and reload on NOSCRIPT."""
    return {name: client.register_script(source(name)) for name in names()}
