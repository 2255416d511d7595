"""Every setting is documented in .env.example, and everything there is a real setting, except
the last section: compose-only variables, each of which docker-compose.yml must use."""

from __future__ import annotations

import re
from pathlib import Path

from core.settings import Settings
from tests.deploy.compose import used_variables

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / ".env.example"
# The heading of the last section of .env.example; what follows it is not a setting.
COMPOSE_MARKER = "# === Compose-only variables"
NAME = r"^#? ?([A-Z][A-Z0-9_]+)="


def sections() -> tuple[str, str]:
    """(settings part, compose-only part) of .env.example."""
    text = ENV_EXAMPLE.read_text()
    assert text.count(COMPOSE_MARKER) == 1, "the compose-only section must exist once, at the end"
    settings_part, compose_part = text.split(COMPOSE_MARKER)
    return settings_part, compose_part


def documented() -> set[str]:
    return set(re.findall(NAME, sections()[0], flags=re.M))


def compose_only() -> set[str]:
    return set(re.findall(NAME, sections()[1], flags=re.M))


def test_every_setting_is_documented_and_nothing_else() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented() == set(), "settings missing from .env.example"
    assert documented() - fields == set(), ".env.example names settings that do not exist"


def test_env_example_values_are_valid_settings(monkeypatch) -> None:
    for line in sections()[0].splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]+)=(.*)$", line)
        if match and match.group(2):
            monkeypatch.setenv(*match.groups())
    Settings(_env_file=None)  # raises on any invalid value


def test_the_readme_explains_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = {name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme}
    assert missing == set(), "settings missing from the README's table"


def test_compose_only_variables_are_used_by_compose_and_are_not_settings() -> None:
    variables = compose_only()
    assert variables, "the compose-only section lists the container knobs"
    unused = variables - set(used_variables())
    assert unused == set(), "compose-only variables that docker-compose.yml does not use"
    clash = variables & {name.upper() for name in Settings.model_fields}
    assert clash == set(), "a setting belongs in the main part of .env.example"
