"""Where the Celery worker spends its CPU on the I/O-bound workload: py-spy samples the worker
process of one container (concurrency 64, 200 ms stand-in) while it drains tasks submitted
through the API, and this prints the top functions by own time and by inclusive time.

py-spy is not a project dependency: `pip install --target /tmp/pyspy py-spy`, then

    .venv/bin/python -m bench.profile_worker [--py-spy /tmp/pyspy/bin/py-spy] [--tasks 4000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections import Counter

from bench import load
from bench.procs import wait_for
from bench.stack import Env, Product
from bench.stats import table


def collapsed_costs(text: str) -> tuple[Counter[str], Counter[str], int]:
    """From py-spy's raw (collapsed) output: samples per leaf frame (own time), samples per frame
    anywhere on the stack (inclusive, counted once per stack), and the total samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own, inclusive, total


def package(frame: str) -> str:
    """`send (redis/connection.py:1349)` → `redis`; the project's own files keep their folder."""
    path = frame.rpartition("(")[2].split(":")[0]
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    return parts[0] if len(parts) > 1 else (parts[0].removesuffix(".py") + " (stdlib)" if parts else "?")


def by_package(own: Counter[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for frame, n in own.items():
        found[package(frame)] += n
    return found


def top_table(costs: Counter[str], total: int, limit: int = 10) -> str:
    rows = [[str(i + 1), f"`{frame}`", f"{n / total:.1%}"] for i, (frame, n) in enumerate(costs.most_common(limit))]
    return table(["#", "function (file:line)", "share of samples"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--py-spy", default="/tmp/pyspy/bin/py-spy")
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", default="/tmp/worker-profile.txt")
    args = parser.parse_args()
    env = Env()
    system = Product(env, 0.2, 64)
    try:
        system.start_api()
        asyncio.run(load.submit_many(system.base_url, args.tasks))
        system.start_workers()
        wait_for(lambda: system.done() >= 100, 60, "the drain to start")
        pid = system.roles()["worker"]
        # --gil: only the thread holding the GIL is sampled, i.e. where the one process's CPU goes
        # (threads waiting in a socket read are not counted as busy).
        spy = [args.py_spy, "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", "200", "--gil"]
        subprocess.run([*spy, "--format", "raw", "-o", args.out, "--nonblocking"], check=True, capture_output=True)
    finally:
        system.stop()
        env.close()
    with open(args.out) as f:
        own, inclusive, total = collapsed_costs(f.read())
    sys.stdout.write(f"{total} samples of the Celery worker's GIL holder over {args.seconds} s (200/s)\n\n")
    sys.stdout.write("Own time by package:\n\n" + top_table(by_package(own), total, 12))
    sys.stdout.write("\nOwn time (the frame on top of the stack):\n\n" + top_table(own, total, 15))
    sys.stdout.write("\nInclusive time (the frame anywhere on the stack):\n\n" + top_table(inclusive, total, 25))


if __name__ == "__main__":
    main()
