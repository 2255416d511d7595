"""What one benchmark run starts: a private redis-server and the LLM stand-ins (the environment,
shared by every run), and per run either the product (API, scheduler, one worker container) or
the baseline (FastAPI → `.delay()` and a Celery worker with the product's settings)."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.baseline_app import DONE, QUEUE
from bench.procs import ROOT, spawn, stop, tree, wait_for
from core.keys import Keys
from core.states import State
from utils import redis_server

PREFIX = "bench:"
WORKER_ID = "bench-container"


class Env:
    """A private redis-server and one stand-in per call delay (0 s and 0.2 s), for the whole run."""

    def __init__(self, delays: tuple[float, ...] = (0.0, 0.2)) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="atf-bench-")
        self.workdir = Path(self._tmp.name)
        self.port = redis_server.free_port()
        self.redis_proc = redis_server.start(self.port, self.workdir / "redis")
        self.redis_url = f"redis://127.0.0.1:{self.port}/0"
        # Patient: after section 5 the server holds 1,000,000 tasks, and a slow machine takes
        # longer than redis-py's default timeout to answer the commands around them.
        self.r = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=300)
        self.stubs: dict[float, tuple[int, subprocess.Popen[bytes]]] = {}
        for delay in delays:
            port = redis_server.free_port()
            argv = ["python", "tests/stub_llm.py", "--port", str(port), "--delay", str(delay)]
            self.stubs[delay] = (port, spawn(argv, {}, self.workdir / f"stub-{delay}.log"))
            wait_for(functools.partial(answers, f"http://127.0.0.1:{port}/_calls"), 20, "the LLM stand-in")

    def stub_url(self, delay: float) -> str:
        return f"http://127.0.0.1:{self.stubs[delay][0]}/v1"

    def stub_pid(self, delay: float) -> int:
        return self.stubs[delay][1].pid

    def stub_calls(self, delay: float) -> list[dict[str, Any]]:
        return list(httpx.get(f"http://127.0.0.1:{self.stubs[delay][0]}/_calls", timeout=30).json())

    def reset(self) -> None:
        """Between runs: every database of the private server emptied, the stand-ins' logs cleared."""
        self.r.flushall(asynchronous=True)  # freed in the background: a million tasks take seconds
        self.r.config_resetstat()
        for port, _proc in self.stubs.values():
            httpx.post(f"http://127.0.0.1:{port}/_reset", timeout=10)

    def close(self) -> None:
        stop([proc for _port, proc in self.stubs.values()])
        stop([self.redis_proc])
        self._tmp.cleanup()


def answers(url: str) -> bool:
    """The server answers at all (the product's /health is 503 until a worker is up)."""
    try:
        return httpx.get(url, timeout=1).status_code in (200, 503)
    except httpx.HTTPError:
        return False


class System:
    """One system under test on the environment: its processes, its submit URL, its done count."""

    name = "system"
    alone: frozenset[str] = frozenset()  # roles measured without their children (see Meter)

    def __init__(self, env: Env, delay: float, concurrency: int = 64, events: bool = False, root: Path = ROOT) -> None:
        """`root`: the source tree whose processes run (another checkout compares its code)."""
        self.env, self.delay, self.concurrency, self.events, self.root = env, delay, concurrency, events, root
        self.api_port = redis_server.free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.vars = {
            "REDIS_URL": env.redis_url,
            "REDIS_KEY_PREFIX": PREFIX,
            "OPENROUTER_API_KEY": "bench-key",
            "OPENROUTER_BASE_URL": env.stub_url(delay),
            "API_PORT": str(self.api_port),
            "WORKER_ID": WORKER_ID,
            "CELERY_WORKER_CONCURRENCY": str(concurrency),
            "CELERY_SEND_TASK_EVENTS": "true" if events else "false",
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _start(self, role: str, argv: list[str]) -> None:
        self.procs[role] = spawn(argv, self.vars, self.env.workdir / f"{self.name}-{role}.log", self.root)

    def start_api(self) -> None:
        raise NotImplementedError

    def start_workers(self) -> None:
        raise NotImplementedError

    def wait_ready(self) -> None:
        """Returns once the workers take tasks."""
        raise NotImplementedError

    def wait_api(self) -> None:
        wait_for(lambda: answers(self.base_url + "/health"), 30, f"{self.name} API", 0.1)

    def done(self) -> int:
        raise NotImplementedError

    def failed(self) -> int:
        return 0

    def roles(self) -> dict[str, int]:
        """Role → root PID for the meter; `redis` and `stub` are the environment's."""
        found = {role: proc.pid for role, proc in self.procs.items()}
        return {**found, "redis": self.env.redis_proc.pid, "stub": self.env.stub_pid(self.delay)}

    def stop(self) -> None:
        stop(list(reversed(self.procs.values())), timeout=30)
        self.procs.clear()


class Product(System):
    """AsyncTaskFlow: `python -m api`, `python -m consumer.scheduler`, `python -m worker.container`
    (the container's process is its consumer; the Celery worker is its child)."""

    name = "atf"
    alone = frozenset({"consumer"})

    def __init__(self, env: Env, delay: float, concurrency: int = 64, events: bool = False, root: Path = ROOT) -> None:
        super().__init__(env, delay, concurrency, events, root)
        self.keys = Keys(PREFIX)

    def start_api(self) -> None:
        self._start("api", ["python", "-m", "api"])
        self._start("scheduler", ["python", "-m", "consumer.scheduler"])
        self.wait_api()

    def start_workers(self) -> None:
        self._start("container", ["python", "-m", "worker.container"])
        wait_for(lambda: len(tree(self.procs["container"].pid)) == 2, 30, "the container's Celery worker")

    def _children(self) -> dict[str, int]:
        """The container's consumer (the container's own process) and Celery worker (its child)."""
        procs = tree(self.procs["container"].pid)
        return {"consumer": procs[0].pid, "worker": procs[1].pid} if len(procs) == 2 else {}

    def wait_ready(self) -> None:
        def live() -> bool:
            consumers: set[str] = self.env.r.smembers(self.keys.consumers)  # type: ignore[assignment]
            return any(self.env.r.exists(self.keys.heartbeat(c)) for c in consumers)

        wait_for(live, 30, "the consumer's heartbeat")

    def done(self) -> int:
        return int(self.env.r.zcard(self.keys.state_index(State.COMPLETED)))  # type: ignore[arg-type]

    def failed(self) -> int:
        states = (State.FAILED, State.DLQ, State.SCHEDULED)
        return sum(int(self.env.r.zcard(self.keys.state_index(s))) for s in states)  # type: ignore[arg-type]

    def roles(self) -> dict[str, int]:
        found = super().roles()
        if "container" in self.procs:
            found.update(self._children())
        return found


class Baseline(System):
    """FastAPI calling `.delay()` (bench/baseline_app.py) and a Celery worker with our settings."""

    name = "baseline"

    def start_api(self) -> None:
        self._start("api", ["python", "-m", "bench.baseline_app"])
        self.wait_api()

    def start_workers(self) -> None:
        argv = ["python", "-m", "celery", "-A", "bench.baseline_app", "worker", "-P", "threads"]
        argv += ["-c", str(self.concurrency), "-Q", QUEUE, "--without-mingle", "--without-gossip", "-l", "INFO"]
        self._start("worker", argv)

    def wait_ready(self) -> None:
        """Celery says nothing in Redis when it is ready: wait until its broker connection shows."""
        wait_for(lambda: len(tree(self.procs["worker"].pid)) > 0 and self._connected(), 30, "the Celery worker")

    def _connected(self) -> bool:
        broker = redis.Redis.from_url(self.env.redis_url.rsplit("/", 1)[0] + "/1")
        try:
            return any(c.get("cmd") in ("brpop", "blpop") for c in broker.client_list())
        finally:
            broker.close()

    def done(self) -> int:
        return int(self.env.r.get(DONE) or 0)  # type: ignore[arg-type]


__all__ = ["ROOT", "Env", "Product", "Baseline", "System"]
