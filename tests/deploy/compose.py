"""Reading docker-compose.yml the way Compose does, without a Docker engine: variable
interpolation (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$$`), YAML merge keys, and the
values .env.example gives."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROCFILE = ROOT / "Procfile"

# `$$` (a literal dollar for the container's shell) or one `${...}` expression.
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def variables(text: str) -> dict[str, list[str | None]]:
    """Each variable Compose will interpolate, with the defaults given at each use (None: none)."""
    found: dict[str, list[str | None]] = {}
    for match in VARIABLE.finditer(text):
        if match.group("name"):
            default = match.group("arg") if match.group("op") in (":-", "-") else None
            found.setdefault(match.group("name"), []).append(default)
    return found


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if not match.group("name"):
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op == ":+":
            return arg if value else ""
        if op in (":?", "?") and not value:
            raise KeyError(f"{name}: {arg}")
        return value or ""

    return VARIABLE.sub(one, text)


def env_example() -> dict[str, str]:
    """Name → value of every uncommented assignment in .env.example."""
    pairs = re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M)
    return dict(pairs)


def raw() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


# What a user adds to .env.example's values before `docker compose up`: the required password.
CHOSEN = {"REDIS_PASSWORD": "chosen-pw"}


def resolved(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as Compose sees it with `env` (default: .env.example's values plus CHOSEN)."""
    values = {**env_example(), **CHOSEN} if env is None else env
    return dict(yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), values)))


def procfile() -> dict[str, list[str]]:
    lines = [line.split(":", 1) for line in PROCFILE.read_text().splitlines() if line.strip()]
    return {name.strip(): command.split() for name, command in lines}


def module_exists(module: str) -> bool:
    """`python -m module` finds it in the repository: a module file or a package's __main__."""
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


def strings(node: Any) -> list[str]:
    """Every string value (and key) of a parsed YAML document; comments are not among them."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def used_variables() -> dict[str, list[str | None]]:
    """The variables Compose interpolates in docker-compose.yml, with the default at each use."""
    found: dict[str, list[str | None]] = {}
    for text in strings(raw()):
        for name, defaults in variables(text).items():
            found.setdefault(name, []).extend(defaults)
    return found
