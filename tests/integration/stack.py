"""The real stack as separate processes (API, Celery worker, consumer, scheduler) on the private
Redis, with the loopback LLM stand-in; tests start, kill and restart its parts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from redis.cluster import RedisCluster

from core.keys import SIDES, Keys, shard_tags
from core.shards import ShardedTaskStore, shard_of
from core.states import TERMINAL, State
from core.store import TaskStore
from utils.probe import api_ready
from utils.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {
    "api": ["-m", "api"],
    "worker": ["-m", "worker"],
    "consumer": ["-m", "consumer"],
    "scheduler": ["-m", "consumer.scheduler"],
}

# Short timings so crash recovery happens within seconds; each test may override any of them.
BASE_ENV = {
    "OPENROUTER_API_KEY": "test-key",
    "OPENROUTER_TIMEOUT": "5",
    "CELERY_BROKER_DB": "3",
    "CELERY_WORKER_CONCURRENCY": "16",
    "MAX_RETRIES": "3",
    "RETRY_BACKOFF_BASE": "0.2",
    "RETRY_BACKOFF_MAX": "1",
    "HEARTBEAT_INTERVAL": "0.5",
    "HEARTBEAT_TTL": "2",
    "SCHEDULER_INTERVAL": "0.1",
    "CELERY_TASK_TIME_LIMIT": "7",
    "CELERY_TASK_SOFT_TIME_LIMIT": "6",
    "TASK_LEASE_MARGIN": "1",
    "CONSUMER_SHUTDOWN_GRACE": "10",
    "CIRCUIT_BREAKER_FAIL_MAX": "50",
    "LOG_LEVEL": "INFO",
}


# How long a test waits for a process to start (an interpreter, Celery, uvicorn, redis-server).
# Generous on purpose: at load 10 on 2 cores the API took over 20 s to answer, and a test must
# fail on what it checks, not on how fast a loaded machine starts a process. A process that dies
# fails the wait at once, with its log, so a broken start costs no extra time.
STARTUP_TIMEOUT = float(os.environ.get("ATF_TEST_STARTUP_TIMEOUT", "180"))


def wait_until(
    check: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition",
    alive: Callable[[], str | None] = lambda: None,
) -> Any:  # fmt: skip
    """Poll `check` until it returns something truthy; fail the test with `what` on timeout, or
    as soon as `alive` names a reason to stop waiting (a process that exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        dead = alive()
        if dead:
            raise AssertionError(f"{dead} while waiting for {what}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Stack:
    """Processes of one deployment, sharing a random key prefix; `pair` names a worker container."""

    def __init__(self, redis_url: str, llm_url: str, workdir: Path, **overrides: str) -> None:
        self.prefix = f"it{uuid.uuid4().hex[:8]}:"
        self.api_port = free_port()
        self.workdir = workdir
        self.env = {
            **os.environ,
            **BASE_ENV,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "OPENROUTER_BASE_URL": llm_url,
            "API_PORT": str(self.api_port),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.redis: Any = redis.Redis.from_url(redis_url, decode_responses=True)
        cluster = bool(self.env.get("REDIS_CLUSTER_NODES"))
        if cluster:  # the test's own reads go where the processes' go
            host, _, port = self.env["REDIS_CLUSTER_NODES"].split(",")[0].rpartition(":")
            self.redis = RedisCluster(host=host, port=int(port), decode_responses=True)
        tags = shard_tags(int(self.env.get("REDIS_SHARDS", "1")), cluster)
        self.shard_keys = [Keys(self.prefix, tag) for tag in tags]
        self.keys = self.shard_keys[0]  # the control shard's (the only one by default)
        sharded = len(tags) > 1
        self.store = ShardedTaskStore(self.redis, self.shard_keys) if sharded else TaskStore(self.redis, self.keys)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=10)

    # --- processes ----------------------------------------------------------------------------
    def start(self, role: str, pair: str = "a") -> subprocess.Popen[bytes]:
        """Start one process; a worker and a consumer with the same `pair` share a container id."""
        name = self.name(role, pair)
        env = {**self.env, "WORKER_ID": f"{self.prefix}{pair}"}
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, *COMMANDS[role]], cwd=self.workdir, env=env, stdout=log, stderr=log)
        self.procs[name] = proc
        if role == "api":
            wait_until(self._api_up, STARTUP_TIMEOUT, what="the API to answer", alive=lambda: self.exited(name))
        return proc

    def exited(self, *names: str) -> str | None:
        """What went wrong when one of these processes has already exited (with its log's end)."""
        for name in names:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                return f"{name} exited with code {proc.returncode}:\n{self.log(name)[-3000:]}"
        return None

    def wait_started(self, pairs: tuple[str, ...]) -> None:
        """Wait until every pair's consumer is registered and its Celery worker is ready (its
        beat in Redis), so a test's own timeouts measure what it checks, not start-up."""
        names = [self.name(role, pair) for pair in pairs for role in ("worker", "consumer")]
        wait_until(lambda: self.live_consumers() >= len(pairs) and self.live_workers(pairs), STARTUP_TIMEOUT,
                   what="consumers and workers to start", alive=lambda: self.exited(*names))  # fmt: skip

    @staticmethod
    def name(role: str, pair: str = "a") -> str:
        """The process's name in `procs` and its log file: one api; `scheduler`, `scheduler-b`, …"""
        if role == "api" or (role == "scheduler" and pair == "a"):
            return role
        return f"{role}-{pair}"

    def start_all(self, pairs: tuple[str, ...] = ("a",)) -> Stack:
        for pair in pairs:
            self.start("worker", pair)
            self.start("consumer", pair)
        self.start("scheduler")
        self.start("api")
        self.wait_started(pairs)
        return self

    def _api_up(self) -> bool:
        """Our API answers /ready (200, or 503 while Redis is away), naming itself: another
        program on the port does not pass."""
        return api_ready(self.http)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.http.close()

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    # --- observations -------------------------------------------------------------------------
    def submit(self, content: str) -> str:
        response = self.http.post("/api/v1/tasks/summarize/", json={"content": content})
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def states(self, task_ids: list[str]) -> dict[str, State]:
        return {tid: self.store.get(tid).state for tid in task_ids}

    def wait_terminal(self, task_ids: list[str], timeout: float) -> dict[str, State]:
        def done() -> dict[str, State] | None:
            states = self.states(task_ids)
            return states if all(s in TERMINAL for s in states.values()) else None

        return dict(wait_until(done, timeout, interval=0.2, what=f"{len(task_ids)} tasks to finish"))

    def live_workers(self, pairs: tuple[str, ...]) -> bool:
        """Every pair's Celery worker beats (it is ready to take dispatches)."""
        return all(self.store.worker_beat(f"{self.prefix}{pair}") is not None for pair in pairs)

    def live_consumers(self) -> int:
        return sum(1 for c in self.redis.smembers(self.keys.consumers) if self.redis.exists(self.keys.heartbeat(c)))

    def keys_of(self, task_id: str) -> Keys:
        """The key names of the shard the task lives on (the only one by default)."""
        return self.shard_keys[shard_of(task_id, len(self.shard_keys))]

    def count_in(self, state: State) -> int:
        """Tasks in `state`, every shard's."""
        return sum(int(self.redis.zcard(keys.state_index(state))) for keys in self.shard_keys)

    def inflight_len(self, consumer_id: str) -> int:
        """Tasks in the consumer's in-flight lists, every shard's."""
        return sum(int(self.redis.llen(keys.inflight(consumer_id))) for keys in self.shard_keys)

    def assert_nothing_left(self) -> None:
        """Every list and in-flight structure of every shard is empty: no task is stranded anywhere."""
        consumers = self.redis.smembers(self.keys.consumers)
        for keys in self.shard_keys:
            assert list(self.redis.scan_iter(match=keys.pending_prefix + "*")) == [], "no pending list"
            assert all(int(n) == 0 for n in self.redis.hvals(keys.depth))
            assert self.redis.zcard(keys.owners_backlog) == 0 and self.redis.hlen(keys.owners_active) == 0
            assert all(self.redis.zcard(keys.ready(side)) == 0 for side in SIDES), "no owner left in turn"
            assert self.redis.zcard(keys.scheduled) == 0
            assert self.redis.zcard(keys.state_index(State.ACTIVE)) == 0
            assert self.redis.zcard(keys.state_index(State.PENDING)) == 0
            for consumer_id in consumers:
                assert self.redis.llen(keys.inflight(consumer_id)) == 0, consumer_id
