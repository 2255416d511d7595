"""6. Redis commands per task, by the process that sent them: Redis MONITOR during a small
no-op run of the product, each line's client port mapped to its process with psutil. Commands a
Lua script runs are counted apart (MONITOR tags them `lua`); a pipeline's commands each count
(MONITOR cannot tell one round trip from several). MONITOR slows Redis: no timing here."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import psutil
import redis

from bench import load
from bench.procs import stop, tree, wait_for
from bench.sections import commands_delta, commandstats, warm
from bench.stack import Env, Product
from utils import redis_server

END = "bench-monitor-end"
LINE = re.compile(r'^[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"')


ROUND_TRIPS = "(round trips)"


def round_trip(in_multi: set[str], client: str, command: str) -> int:
    """1 when this command starts a round trip: a MULTI…EXEC block is one (redis-py and kombu
    send a transaction as one pipeline), any other command one each (a non-transaction
    pipeline is invisible in MONITOR and counts per command, so this is an upper bound)."""
    if command == "multi":
        in_multi.add(client)
        return 1
    if client in in_multi:
        if command in ("exec", "discard"):
            in_multi.discard(client)
        return 0
    return 1


class Monitor:
    """`redis-cli monitor` into a file (a Python reader here lost lines under load; redis-cli keeps
    up), counted by (client port or `lua`, command) once the end marker has arrived."""

    def __init__(self, port: int, path: Path) -> None:
        cli = shutil.which("redis-cli") or str(Path(redis_server.find_binary()).with_name("redis-cli"))
        self.port, self.path = port, path
        with path.open("wb") as out:
            self.proc = subprocess.Popen([cli, "-p", str(port), "monitor"], stdout=out, stderr=subprocess.DEVNULL)
        wait_for(lambda: path.stat().st_size > 0, 10, "redis-cli monitor")  # its "OK"

    def stop(self, r: redis.Redis) -> Counter[tuple[str, str]]:
        r.echo(END)
        wait_for(lambda: END in self.path.read_text(errors="replace")[-4096:], 120, "the end of MONITOR's output")
        stop([self.proc])
        counts: Counter[tuple[str, str]] = Counter()
        in_multi: set[str] = set()
        for line in self.path.read_text(errors="replace").splitlines():
            match = LINE.match(line)
            if match and END not in line:
                where, command = match.group(1), match.group(2).lower()
                port = "lua" if where == "lua" else where.rsplit(":", 1)[-1]
                counts[(port, command)] += 1
                if port != "lua":
                    counts[(port, ROUND_TRIPS)] += round_trip(in_multi, port, command)
        return counts


def ports_of(roles: dict[str, int], alone: frozenset[str]) -> dict[str, str]:
    """Local TCP port → role, for every connection the roles' processes hold now (a role in
    `alone` without its children)."""
    found = {}
    for role, pid in roles.items():
        for proc in tree(pid)[: 1 if role in alone else None]:
            try:
                for conn in proc.net_connections(kind="tcp"):
                    if conn.laddr:
                        found[str(conn.laddr.port)] = role
            except psutil.Error:
                continue
    return found


def trace_run(env: Env, count: int) -> dict[str, dict[str, float]]:
    """role → command → commands per task, for `count` no-op tasks submitted through the API."""
    env.reset()
    system = Product(env, 0.0)
    try:
        system.start_api()
        system.start_workers()
        system.wait_ready()
        warm(system)
        roles = {k: v for k, v in system.roles().items() if k not in ("redis", "stub", "container")}
        monitor = Monitor(env.port, env.workdir / "monitor.txt")
        base, before = system.done(), commandstats(env)
        ports = ports_of(roles, system.alone)
        asyncio.run(load.submit_many(system.base_url, count, 8))
        wait_for(lambda: system.done() >= base + count, 120, "the traced tasks", 0.05)
        ports.update(ports_of(roles, system.alone))
        counts = monitor.stop(env.r)
        every = commands_delta(before, commandstats(env))
    finally:
        system.stop()
    out: dict[str, dict[str, float]] = {}
    for (client, command), n in counts.items():
        role = "inside Lua scripts" if client == "lua" else ports.get(client, "harness / other")
        per_role = out.setdefault(role, {})
        per_role[command] = per_role.get(command, 0.0) + n / count
    out["INFO commandstats (all clients and scripts)"] = {k: v / count for k, v in every.items()}
    return out
