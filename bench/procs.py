"""Processes of one benchmark run: start them with an environment and a log file, stop them by
their own PID, and measure them with psutil (CPU time of a process tree, peak RSS sampled)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def spawn(argv: list[str], env: Mapping[str, str], log: Path, root: Path = ROOT) -> subprocess.Popen[bytes]:
    """Start `argv` (`python` = this interpreter) in the source tree `root` (this repository, or
    another checkout of it: its own code then runs, first on the path), output to `log`."""
    argv = [sys.executable, *argv[1:]] if argv[0] == "python" else argv
    full_env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1", **env}
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=root, env=full_env, stdout=out, stderr=out, start_new_session=True)


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """SIGTERM each process we started, wait, then SIGKILL the ones still alive."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tree(pid: int) -> list[psutil.Process]:
    """The process and its living descendants ([] once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU of the processes, with their reaped children's."""
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            continue
    return total


def rss_bytes(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class Meter:
    """Roles (api, consumer, worker, redis, …) → root PIDs. `cpu()` reads every role's CPU
    seconds now; a sampling thread keeps each role's peak RSS every 0.2 s. A role counts its
    whole process tree, except the roles in `alone` (a parent whose child is another role)."""

    roles: dict[str, int]
    alone: frozenset[str] = frozenset()
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def cpu(self) -> dict[str, float]:
        return {role: cpu_seconds(self._procs(role, pid)) for role, pid in self.roles.items()}

    def _procs(self, role: str, pid: int) -> list[psutil.Process]:
        procs = tree(pid)
        return procs[:1] if role in self.alone else procs

    def start_sampling(self, interval: float = 0.2) -> None:
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def stop_sampling(self) -> dict[str, int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return dict(self.peaks)

    def _sample(self, interval: float) -> None:
        while not self._stop.wait(interval):
            for role, pid in self.roles.items():
                self.peaks[role] = max(self.peaks.get(role, 0), rss_bytes(self._procs(role, pid)))


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {role: after[role] - before.get(role, 0.0) for role in after}
