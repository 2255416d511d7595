"""The operations API on the real processes: Celery's own tools (`celery inspect ping`, task
events as Flower reads them) reach our workers, and /health, /health/workers, diagnostics and the
task detail reflect what the real worker did."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from core.states import State
from tests.integration.stack import ROOT, Stack, wait_until

pytestmark = pytest.mark.integration


def broker_url(stack: Stack) -> str:
    base = stack.env["REDIS_URL"].rsplit("/", 1)[0]
    return f"{base}/{stack.env['CELERY_BROKER_DB']}"


def test_celery_inspect_ping_reaches_the_worker(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack().start_all()
    hostname = f"worker@{stack.prefix}a"

    def ping() -> str:
        command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "inspect", "ping", "-d", hostname]
        done = subprocess.run(
            [*command, "--timeout", "3"], cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60
        )
        return done.stdout if "pong" in done.stdout else ""

    output = wait_until(ping, 40, interval=0.5, what="the worker to answer celery inspect ping")
    assert hostname in output


def test_task_events_reach_an_event_receiver_as_flower_reads_them(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(CELERY_SEND_TASK_EVENTS="true").start_all()  # off by default, as in Celery
    seen: list[dict[str, Any]] = []
    app = Celery(broker=broker_url(stack))

    def listen() -> None:
        with app.connection() as connection:
            receiver = app.events.Receiver(connection, handlers={"task-succeeded": seen.append})
            with contextlib.suppress(TimeoutError):  # consume() yields after each event or idle second
                for _ in receiver.consume(limit=None, timeout=40, wakeup=True):
                    if seen:
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()

    def event_seen() -> bool:
        # The receiver binds its queue asynchronously: keep tasks coming until one's event arrives.
        if not seen:
            stack.submit("A text to summarize. It has two sentences.")
        return bool(seen)

    wait_until(event_seen, 30, interval=0.5, what="a task-succeeded event")
    assert seen[0]["hostname"] == f"worker@{stack.prefix}a"


def test_health_workers_and_detail_reflect_the_real_pipeline(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(DIAGNOSTICS_TIMEOUT="5").start_all()  # a loaded machine answers `inspect` slowly
    wait_until(lambda: stack.http.get("/health").status_code == 200, 20, what="/health to be 200")
    ids = [stack.submit(f"Text number {i}. It has two sentences.") for i in range(5)]
    assert set(stack.wait_terminal(ids, 30).values()) == {State.COMPLETED}

    health = stack.http.get("/health").json()
    assert (health["status"], health["workers"], health["scheduler"], health["breaker"]) == ("ok", 1, "ok", "closed")

    def counted() -> dict[str, Any] | None:
        workers = stack.http.get("/health/workers").json()["workers"]
        return workers[0] if workers and workers[0]["processed"] >= 5 else None

    worker = wait_until(counted, 10, what="the consumer's counts")
    assert (worker["completed"], worker["failed"]) == (5, 0)
    assert worker["concurrency"] == 16 and worker["pid"] > 0

    detail = stack.task(ids[0])
    assert [(h["from"], h["to"]) for h in detail["history"]] == [
        ("", "PENDING"), ("PENDING", "ACTIVE"), ("ACTIVE", "COMPLETED"),
    ]  # fmt: skip
    assert detail["model"] and detail["usage"]["total_tokens"] > 0
    assert detail["progress"] == 100 and detail["attempts"] == 1

    diagnostics = stack.http.get("/health/workers/diagnostics").json()
    hostname = f"worker@{stack.prefix}a"
    assert hostname in diagnostics["celery"]["workers"], diagnostics["celery"]
    assert diagnostics["celery"]["workers"][hostname]["pid"] > 0
    assert diagnostics["redis"]["redis_version"]

    stats = stack.http.get("/api/v1/tasks/statistics/overview").json()
    assert stats["totals"]["completed"] == 5 and stats["success_rate"] == 1.0
    assert stats["throughput_last_minute"]["completed"] == 5
