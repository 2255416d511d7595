"""The whole stack through Redis failovers: api, consumer, Celery worker and scheduler on a real
master with two replicas and three sentinels, while a client submits steadily and tasks run.

Three scenarios in a row, as an operator meets them: (a) the master is killed (kill -9), (c) the
master killed in (a) restarts and rejoins as a replica, (b) a planned `SENTINEL FAILOVER`.
For each: no accepted task lost, no 500, no process died; the 503 window and the duplicate LLM
calls are reported."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from core.keys import Keys
from core.redis import sync_client
from core.settings import Settings
from core.states import State
from core.store import TaskStore
from tests.ha.topology import MASTER_NAME, SentinelDeployment
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SUBMITS_PER_SECOND = 5
# How long a client keeps retrying one submit (same Idempotency-Key) before giving up.
CLIENT_PATIENCE = 120.0
MARKER = re.compile(r"HA task \d+ ([0-9a-f]{32})")  # names the task in what the LLM was sent
SETTLE = 4.0  # seconds of steady submits after each scenario, before the next


@dataclass
class Phase:
    name: str
    accepted: list[str] = field(default_factory=list)
    unavailable: list[float] = field(default_factory=list)  # when each 503 or refused connection came
    errors: list[str] = field(default_factory=list)  # any other answer: a 500, an unexpected status

    @property
    def window(self) -> float:
        return max(self.unavailable) - min(self.unavailable) if self.unavailable else 0.0


class Client:
    """Submits SUBMITS_PER_SECOND tasks, each with its own Idempotency-Key, retrying a 503 or a
    refused connection with the same key, as the API's documentation tells clients to."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.phase = Phase("start")
        self.phases = [self.phase]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def begin(self, name: str) -> None:
        self.phase = Phase(name)
        self.phases.append(self.phase)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self._submit(f"HA task {n} {uuid.uuid4().hex}. It has two sentences.")
            self.stop.wait(1 / SUBMITS_PER_SECOND)

    def _submit(self, content: str) -> None:
        """Each outcome counts in the phase under way when it came (a retried submit may span two)."""
        key, deadline = uuid.uuid4().hex, time.monotonic() + CLIENT_PATIENCE
        while time.monotonic() < deadline:
            try:
                response = self.http.post(
                    "/api/v1/tasks/summarize/", json={"content": content}, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                self.phase.unavailable.append(time.monotonic())
                time.sleep(0.2)
                continue
            if response.status_code == 202:
                self.phase.accepted.append(response.json()["task_id"])
                return
            if response.status_code == 503:
                self.phase.unavailable.append(time.monotonic())
                time.sleep(min(float(response.headers.get("Retry-After", "1")), 0.5))
                continue
            self.phase.errors.append(f"{response.status_code} {response.text[:200]}")
            return
        self.phase.errors.append("gave up after retrying for CLIENT_PATIENCE")


def _stack(deployment: SentinelDeployment, stub: StubLLM, workdir: Path) -> Stack:
    sentinels = {"REDIS_SENTINELS": deployment.sentinel_addresses, "REDIS_SENTINEL_MASTER": MASTER_NAME}
    url = f"redis://127.0.0.1:{deployment.master_port()}/2"
    # A heartbeat TTL as in production (15 s by default) outlasts a failover: with the suite's 2 s,
    # each failover would also expire the consumer and re-run its tasks.
    timings = {"HEARTBEAT_INTERVAL": "1", "HEARTBEAT_TTL": "10"}
    stack = Stack(url, stub.url, workdir, REDIS_MIN_REPLICAS_ACK="1", **sentinels, **timings)
    # The test's own reads follow the master too.
    settings = Settings(_env_file=None, redis_url=url, celery_broker_db=3, redis_sentinel_master=MASTER_NAME,
                        redis_sentinels=deployment.sentinel_addresses)
    stack.redis = sync_client(settings, patient=True)
    stack.store = TaskStore(stack.redis, Keys(stack.prefix))
    return stack


@pytest.fixture
def slow_stub() -> Iterator[StubLLM]:
    """Each call takes about a second, so several attempts are under way when a failover hits."""
    with StubLLM(delay=0.8, max_delay=1.5) as llm:
        yield llm


@pytest.mark.mostly_waiting
def test_failovers_lose_no_accepted_task(deployment: SentinelDeployment, slow_stub: StubLLM, tmp_path: Path) -> None:
    stub = slow_stub
    stack = _stack(deployment, stub, tmp_path).start_all()
    client = Client(f"http://127.0.0.1:{stack.api_port}")
    client.thread.start()
    try:
        time.sleep(SETTLE)
        killed = deployment.master_port()
        client.begin("a: kill -9 of the master")
        deployment.node(killed).kill()
        deployment.wait_for_new_master(killed)
        time.sleep(SETTLE)

        # (c) before (b): with one replica left, the promoted master of (b) would have none until
        # Sentinel re-points the deposed one, 10 s later (min-replicas-to-write refuses writes
        # meanwhile); the recommended deployment has two.
        client.begin("c: the old master rejoins")
        deployment.node(killed).start()
        deployment.wait_rejoined(killed)
        time.sleep(SETTLE)

        client.begin("b: SENTINEL FAILOVER")
        before = deployment.master_port()
        deployment.failover()
        deployment.wait_for_new_master(before)
        time.sleep(SETTLE)
    finally:
        client.stop.set()
        client.thread.join(CLIENT_PATIENCE + 10)
    try:
        accepted, calls = audit(client, stack, stub)
        assert "Unrecoverable error" not in stack.log("worker-a")
        uncalled = [t for t in accepted if calls[_marker(stack, t)] == 0]
        assert uncalled == [], "every task's calls are counted (the duplicates figure depends on it)"
    finally:
        stack.stop()


def audit(client: Client, stack: Stack, stub: StubLLM) -> tuple[list[str], Counter[str]]:
    """After the scenarios: every accepted task settled, the table printed, and the books checked:
    no process died, no answer but 202 and 503, some submits through in every phase, no accepted
    task lost. Returns the accepted ids and the LLM calls per task marker."""
    accepted = [task_id for phase in client.phases for task_id in phase.accepted]
    # The lease (2 × CELERY_TASK_TIME_LIMIT + margin = 15 s) bounds how long a task whose
    # dispatch a failover lost can stay ACTIVE; generous on top of it for a loaded machine.
    final = _settle(stack, accepted, timeout=240)
    calls = Counter(m.group(1) for c in stub.calls() if (m := MARKER.search(c["content"])))
    _report(client.phases, final, calls, stack)
    dead = [name for name, proc in stack.procs.items() if proc.poll() is not None]
    assert dead == [], f"processes died: {dead}"
    for phase in client.phases:
        assert phase.errors == [], (phase.name, phase.errors)
        assert phase.accepted, f"{phase.name}: no submit went through"
    lost = [task_id for task_id, state in final.items() if state is not State.COMPLETED]
    assert lost == [], f"accepted tasks not completed: {lost[:10]}"
    return accepted, calls


def _settle(stack: Stack, task_ids: list[str], timeout: float) -> dict[str, State | None]:
    """Each accepted task's state once all are terminal (None: its hash is gone, a lost task)."""

    def states() -> dict[str, State | None]:
        found: dict[str, State | None] = {}
        for task_id in task_ids:
            raw = stack.redis.hget(stack.keys.task(task_id), "state")
            found[task_id] = State(raw) if raw else None
        return found

    def settled() -> dict[str, State | None] | None:
        now = states()
        return now if all(s in (State.COMPLETED, State.FAILED, State.DLQ, None) for s in now.values()) else None

    try:
        return dict(wait_until(settled, timeout, interval=1.0, what="accepted tasks to finish"))
    except AssertionError:
        return states()


def _marker(stack: Stack, task_id: str) -> str:
    match = MARKER.search(stack.redis.hget(stack.keys.task(task_id), "content") or "")
    return match.group(1) if match else ""


def _report(phases: list[Phase], final: dict[str, State | None], calls: Counter[str], stack: Stack) -> None:
    marker_of = {task_id: _marker(stack, task_id) for task_id in final}
    print("\n| scenario | accepted | lost | 503 window (s) | 503s | duplicate LLM calls |")
    print("|---|---|---|---|---|---|")
    for phase in phases:
        lost = sum(1 for t in phase.accepted if final.get(t) is not State.COMPLETED)
        duplicates = sum(max(0, calls[marker_of[t]] - 1) for t in phase.accepted)
        print(f"| {phase.name} | {len(phase.accepted)} | {lost} | {phase.window:.1f} | "
              f"{len(phase.unavailable)} | {duplicates} |")
