"""Build the dashboard when its sources changed: `npm ci` from the lock file when the installed
packages are not the locked ones, then `npm run build` into frontend/dist. Used by `make run`
(before serving it), `make test` (with --test: also the Vitest component tests) and the browser
tests. Without a usable Node.js it says so and the caller goes on without the dashboard.

    python -m utils.frontend_build [--test]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
# What the build reads; a change in any of them (or in the lock) means a new build.
INPUTS = ("package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json", ".npmrc", "src")
BUILD_STAMP = ".build-digest"
DEPS_STAMP = ".atf-lock-digest"
# Vite 8 needs Node ^20.19 or >= 22.12.
MIN_NODE = (20, 19)


class FrontendUnavailable(RuntimeError):
    """No Node.js/npm fit to build the dashboard on this machine."""


def digest(root: Path, names: tuple[str, ...]) -> str:
    """A hash of the named files and of every file under the named folders (paths and bytes)."""
    h = hashlib.sha256()
    for name in names:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                h.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()


def node_problem() -> str | None:
    """Why this machine cannot build the dashboard, or None when it can."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not found on PATH"
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    if not match or (int(match[1]), int(match[2])) < MIN_NODE:
        return f"Node.js {out.strip() or '?'} is too old (the build needs >= {MIN_NODE[0]}.{MIN_NODE[1]})"
    return None


def _npm(*args: str) -> None:
    print(f"frontend: npm {' '.join(args)}", flush=True)
    subprocess.run(["npm", *args], cwd=FRONTEND, check=True)


def ensure_deps() -> None:
    """`npm ci` unless node_modules holds exactly what the lock file names (checked by its digest)."""
    stamp = FRONTEND / "node_modules" / DEPS_STAMP
    wanted = digest(FRONTEND, ("package.json", "package-lock.json"))
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    _npm("ci", "--no-audit", "--no-fund")
    stamp.write_text(wanted)


def ensure_build() -> Path:
    """frontend/dist, rebuilt when the sources changed since the last build; raises
    FrontendUnavailable without a usable Node.js."""
    dist = FRONTEND / "dist"
    wanted = digest(FRONTEND, INPUTS)
    if (dist / BUILD_STAMP).is_file() and (dist / BUILD_STAMP).read_text() == wanted:
        return dist
    problem = node_problem()
    if problem:
        raise FrontendUnavailable(problem)
    ensure_deps()
    _npm("run", "build")
    (dist / BUILD_STAMP).write_text(wanted)
    return dist


def run_unit_tests() -> None:
    problem = node_problem()
    if problem:
        raise FrontendUnavailable(problem)
    ensure_deps()
    _npm("test")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="also run the Vitest component tests")
    args = parser.parse_args(argv)
    try:
        dist = ensure_build()
        if args.test:
            run_unit_tests()
    except FrontendUnavailable as exc:
        print(f"frontend: skipped, {exc}; install Node.js >= 20.19 to build and test the dashboard")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"frontend: `{' '.join(map(str, exc.cmd))}` failed with exit code {exc.returncode}", file=sys.stderr)
        return 1
    print(f"frontend: build ready in {dist.relative_to(FRONTEND.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
