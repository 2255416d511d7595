"""The chaos suite's books: what was submitted, every event the scripts published, what the
LLM stand-in saw, and the audit at the end that must balance."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from core.states import TERMINAL, State
from tests.integration.stack import Stack, wait_until
from tests.stub_llm import StubLLM

_TAG = re.compile(r"\[\[tag:([^\]]+)\]\]")


class EventLog:
    """Every message on the events channel, with a subscriber that reconnects by itself (a Redis
    restart drops the subscription; events published while it is away are simply not seen)."""

    def __init__(self, redis_url: str, channels: list[str]) -> None:
        self.events: list[dict[str, Any]] = []
        self._url, self._channels = redis_url, channels
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="event-log")
        self._thread.start()
        assert self._ready.wait(10), "could not subscribe to the events channel"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (redis.RedisError, OSError):
                self._stop.wait(0.2)

    def _listen(self) -> None:
        client = redis.Redis.from_url(self._url, decode_responses=True, socket_timeout=5)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(*self._channels)  # on a cluster any node hears every node's PUBLISH
        self._ready.set()
        try:
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message and message["type"] == "message":
                    self.events.append(json.loads(message["data"]))
        finally:
            pubsub.close()
            client.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def by_task(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in list(self.events):
            if "task_id" in event:
                grouped[event["task_id"]].append(event)
        return grouped


@dataclass
class Figures:
    """One row of the chaos table."""

    scenario: str
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    dlq: int = 0
    lost: int = 0
    executed_twice: int = 0
    llm_calls: int = 0
    late_refused: int = 0
    retries: int = 0
    wall_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    COLUMNS = ("scenario", "submitted", "completed", "failed", "dlq", "lost", "executed_twice",
               "llm_calls", "late_refused", "retries", "wall_s")

    def row(self) -> str:
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in (getattr(self, c) for c in self.COLUMNS)]
        notes = ", ".join(f"{k} {v}" for k, v in self.notes.items())
        return "| " + " | ".join([*cells, notes]) + " |"

    @classmethod
    def header(cls) -> str:
        names = [*cls.COLUMNS, "notes"]
        return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


RESULTS: list[Figures] = []  # printed as one table at the end of the session (see conftest)


class Books:
    """Submits through the HTTP API and audits the end state of one scenario."""

    def __init__(self, scenario: str, stack: Stack, stub: StubLLM) -> None:
        self.figures = Figures(scenario)
        self.stack = stack
        self.stub = stub
        self.tags: dict[str, str] = {}  # tag -> task id
        self.log = EventLog(stack.env["REDIS_URL"], [keys.events for keys in stack.shard_keys])
        self.started = time.monotonic()
        stub.reset()

    # --- submitting ---------------------------------------------------------------------------
    def content(self, tag: str, directive: str = "") -> str:
        return f"[[tag:{tag}]] {directive} Document {tag} for the chaos suite. It has two sentences."

    def try_submit(self, tag: str, directive: str = "") -> httpx.Response:
        """One POST; a 202's task is on the books, any other answer is the caller's to judge."""
        response = self.stack.http.post("/api/v1/tasks/summarize/", json={"content": self.content(tag, directive)})
        if response.status_code == 202:
            self.tags[tag] = response.json()["task_id"]
        return response

    def submit(self, count: int, directive: str = "", prefix: str = "t", threads: int = 8) -> list[str]:
        """Submit `count` tasks in parallel; every one must be accepted."""
        tags = [f"{prefix}{len(self.tags) + i}" for i in range(count)]

        def one(tag: str) -> str:
            response = self.try_submit(tag, directive)
            assert response.status_code == 202, response.text
            return str(response.json()["task_id"])

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, tags))

    # --- watching -----------------------------------------------------------------------------
    def states(self, ids: list[str] | None = None) -> dict[str, str | None]:
        ids = list(self.tags.values()) if ids is None else ids
        pipe = self.stack.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(self.stack.keys_of(task_id).task(task_id), "state")
        return dict(zip(ids, pipe.execute(), strict=True))

    def finished_share(self) -> float:
        states = self.states()
        return sum(s in TERMINAL for s in states.values()) / max(1, len(states))

    def settle(self, timeout: float) -> None:
        """Wait until every submitted task is in a terminal state."""
        wait_until(lambda: self.finished_share() == 1.0, timeout, interval=0.25, what="every task to finish")

    def calls_by_tag(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for call in self.stub.calls():
            match = _TAG.search(call["content"])
            if match:
                grouped[match.group(1)].append(call)
        return grouped

    # --- the audit ----------------------------------------------------------------------------
    def audit(self, expect: State | None = State.COMPLETED) -> Figures:
        """Check the books (and fail the test when they do not balance); returns the figures."""
        self.log.stop()
        f = self.figures
        f.wall_s = time.monotonic() - self.started
        f.submitted = len(self.tags)
        tasks = {tag: self.stack.store.get(task_id) for tag, task_id in self.tags.items()}
        counts = Counter(task.state for task in tasks.values())
        f.completed, f.failed, f.dlq = counts[State.COMPLETED], counts[State.FAILED], counts[State.DLQ]
        f.lost = sum(task.state not in TERMINAL for task in tasks.values())
        f.retries = sum(task.retry_count for task in tasks.values())
        calls = self.calls_by_tag()
        f.llm_calls = len(self.stub.calls())
        f.executed_twice = sum(1 for tag in tasks if sum(c["status"] == 200 for c in calls[tag]) > 1)
        f.late_refused = sum(self.stack.log(n).count("result of stale attempt") for n in self._worker_logs())
        RESULTS.append(f)

        assert f.lost == 0, f"lost: {[t.id for t in tasks.values() if t.state not in TERMINAL][:10]}"
        self._assert_one_index_each(tasks)
        self._assert_final_states_never_overwritten()
        for tag, task in tasks.items():
            if task.state == State.COMPLETED:
                assert task.result == f"summary:{tag}", f"task {task.id} holds another task's result"
        if expect is not None:
            assert counts == Counter({expect: f.submitted}), dict(counts)
        self.stack.assert_nothing_left()
        return f

    def _worker_logs(self) -> list[str]:
        return [name for name in self.stack.procs if name.startswith("worker")]

    def _assert_one_index_each(self, tasks: dict[str, Any]) -> None:
        """Each task is in exactly one state index, the one of the state its hash holds."""
        pipe = self.stack.redis.pipeline(transaction=False)
        for task in tasks.values():
            for state in State:
                pipe.zscore(self.stack.keys_of(task.id).state_index(state), task.id)
        scores = iter(pipe.execute())
        for task in tasks.values():
            member_of = [state for state in State if next(scores) is not None]
            assert member_of == [task.state], f"task {task.id} ({task.state}) is indexed under {member_of}"

    def _assert_final_states_never_overwritten(self) -> None:
        """Once an event said a task finished, no later event of that task exists."""
        for task_id, events in self.log.by_task().items():
            ends = [i for i, e in enumerate(events) if e.get("to") in {s.value for s in TERMINAL}]
            if ends:
                assert ends[0] == len(events) - 1, f"task {task_id} changed after finishing: {events[ends[0]:]}"
