"""utils/frontend_build.py's decisions: rebuild only when an input changed, and a clear reason
instead of a crash when Node.js is missing or too old."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from utils import frontend_build


def test_the_digest_follows_every_input_file_and_only_those(tmp_path: Path) -> None:
    (tmp_path / "src" / "pages").mkdir(parents=True)
    (tmp_path / "package.json").write_text("{}")
    (tmp_path / "src" / "pages" / "A.tsx").write_text("a")
    names = ("package.json", "src", "missing.json")
    first = frontend_build.digest(tmp_path, names)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "index.html").write_text("built")  # not an input
    assert frontend_build.digest(tmp_path, names) == first
    (tmp_path / "src" / "pages" / "A.tsx").write_text("b")
    assert frontend_build.digest(tmp_path, names) != first
    (tmp_path / "src" / "pages" / "A.tsx").write_text("a")
    (tmp_path / "src" / "pages" / "A.tsx").rename(tmp_path / "src" / "pages" / "B.tsx")
    assert frontend_build.digest(tmp_path, names) != first  # a rename is a change too


def _fake_node(folder: Path, version: str) -> None:
    for name, script in (("node", f"#!/bin/sh\necho {version}\n"), ("npm", "#!/bin/sh\nexit 0\n")):
        path = folder / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(
    ("version", "problem"),
    [(None, "not found"), ("v18.19.0", "too old"), ("v20.18.1", "too old"), ("v20.19.2", None), ("v22.12.0", None)],
)
def test_node_problem_names_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str | None, problem: str | None
) -> None:
    if version:
        _fake_node(tmp_path, version)
    monkeypatch.setenv("PATH", str(tmp_path))
    found = frontend_build.node_problem()
    assert (found is None) if problem is None else (problem in str(found))


def test_main_skips_with_the_reason_when_node_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frontend = tmp_path / "frontend"
    (frontend / "src").mkdir(parents=True)
    (frontend / "package.json").write_text("{}")
    monkeypatch.setattr(frontend_build, "FRONTEND", frontend)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert frontend_build.main(["--test"]) == 0
    assert "frontend: skipped, node/npm not found on PATH" in capsys.readouterr().out
    assert not (frontend / "dist").exists()


def test_an_up_to_date_build_needs_no_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frontend = tmp_path / "frontend"
    (frontend / "dist").mkdir(parents=True)
    (frontend / "package.json").write_text("{}")
    monkeypatch.setattr(frontend_build, "FRONTEND", frontend)
    stamp = frontend_build.digest(frontend, frontend_build.INPUTS)
    (frontend / "dist" / frontend_build.BUILD_STAMP).write_text(stamp)
    monkeypatch.setenv("PATH", os.devnull)
    assert frontend_build.ensure_build() == frontend / "dist"
