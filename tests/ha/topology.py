"""A real Redis Sentinel deployment on loopback: one master, two replicas, three sentinels, each a
`redis-server` on a free port. The failover tests break it on purpose."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from utils import redis_server

MASTER_NAME = "atf-ha"
DOWN_AFTER_MS = 3000
# Generous: a loaded machine starts processes slowly, and a failover's phases take seconds.
START_WAIT = 60.0
FAILOVER_WAIT = 90.0


def wait_for(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Node:
    port: int
    workdir: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = str(self.workdir / "redis.log")
        cmd = [redis_server.find_binary(), *self.args, "--logfile", log]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class SentinelDeployment:
    """Master, replicas and sentinels as Redis recommends for HA: `min-replicas-to-write 1` and a
    short `min-replicas-max-lag`, so a deposed master soon refuses writes; AOF every second."""

    root: Path
    replicas: int = 2
    sentinels: int = 3
    data: list[Node] = field(default_factory=list)
    watchers: list[Node] = field(default_factory=list)

    def start(self) -> SentinelDeployment:
        ports = [redis_server.free_port() for _ in range(self.replicas + 1)]
        for i, port in enumerate(ports):
            args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.root / f"r{port}")]
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
            args += ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "5"]
            args += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
            if i:
                args += ["--replicaof", "127.0.0.1", str(ports[0])]
            self.data.append(Node(port, self.root / f"r{port}", args))
        for node in self.data:
            node.start()
        wait_for(lambda: all(n.client().ping() for n in self.data), "the Redis servers", START_WAIT)
        wait_for(lambda: self.data[0].client().info("replication")["connected_slaves"] == self.replicas,
              "the replicas to sync", START_WAIT)
        for _ in range(self.sentinels):
            self._add_sentinel(ports[0])
        wait_for(self._sentinels_agree, "the sentinels to see every node", START_WAIT)
        return self

    def _add_sentinel(self, master_port: int) -> None:
        port = redis_server.free_port()
        workdir = self.root / f"s{port}"
        workdir.mkdir(parents=True)
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 20000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 2\n"
        )
        node = Node(port, workdir, [str(conf), "--sentinel"])
        node.start()
        self.watchers.append(node)

    def _sentinels_agree(self) -> bool:
        for s in self.watchers:
            master = s.client().sentinel_master(MASTER_NAME)
            if master["num-slaves"] < self.replicas or master["num-other-sentinels"] < self.sentinels - 1:
                return False
        return True

    # --- what the tests read and break -------------------------------------------------------
    @property
    def sentinel_addresses(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.watchers)

    def master_port(self) -> int:
        return int(self.watchers[0].client().sentinel_get_master_addr_by_name(MASTER_NAME)[1])

    def node(self, port: int) -> Node:
        return next(n for n in self.data if n.port == port)

    def wait_for_new_master(self, old_port: int) -> int:
        """Wait until every sentinel names a master other than `old_port` that says it is one."""
        def switched() -> bool:
            ports = {int(s.client().sentinel_get_master_addr_by_name(MASTER_NAME)[1]) for s in self.watchers if s.alive}
            if len(ports) != 1 or old_port in ports:
                return False
            return self.node(ports.pop()).client().info("replication")["role"] == "master"

        wait_for(switched, f"a new master instead of :{old_port}", FAILOVER_WAIT)
        return self.master_port()

    def failover(self) -> None:
        """`SENTINEL FAILOVER`, as an operator would for planned maintenance."""
        self.watchers[0].client().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

    def wait_rejoined(self, port: int) -> None:
        """Wait until the node on `port` replicates the current master with its link up."""
        def rejoined() -> bool:
            info = self.node(port).client().info("replication")
            return info["role"] == "slave" and info.get("master_link_status") == "up" \
                and int(info["master_port"]) == self.master_port()

        wait_for(rejoined, f":{port} to rejoin as a replica", FAILOVER_WAIT)

    def stop(self) -> None:
        for node in [*self.watchers, *self.data]:
            node.stop()
