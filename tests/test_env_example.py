"""Every setting is documented in .env.example, and everything there is a real setting."""

from __future__ import annotations

import re
from pathlib import Path

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / ".env.example"


def documented() -> set[str]:
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))


def test_every_setting_is_documented_and_nothing_else() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented() == set(), "settings missing from .env.example"
    assert documented() - fields == set(), ".env.example names settings that do not exist"


def test_env_example_values_are_valid_settings(monkeypatch) -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]+)=(.*)$", line)
        if match and match.group(2):
            monkeypatch.setenv(*match.groups())
    Settings(_env_file=None)  # raises on any invalid value


def test_the_readme_explains_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = {name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme}
    assert missing == set(), "settings missing from the README's table"
