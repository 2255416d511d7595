"""schemathesis against `/openapi.json` of the real stack: every operation, valid and invalid
inputs, a bounded number of examples each. No response may be a 5xx, and every response must be
documented (status, content type, headers) and match its schema. Afterwards no process's log
holds a secret, and nothing malformed reached Redis."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.task import Task
from tests.fuzz.conftest import ADMIN_KEY, SECRETS, SUBMIT_KEY
from tests.integration.stack import Stack

pytestmark = pytest.mark.fuzz

# Bounded so the whole module runs in about a minute on 2 cores; FUZZ_EXAMPLES raises it.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
# The live stream never ends; its refusals and snapshot are tested in tests/api.
ENDLESS = "/api/v1/queues/status/stream"
POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_headers_conformance, response_schema_conformance]  # fmt: skip
# Invalid input must be refused cleanly; its bodies are our error model, documented or not.
NEGATIVE_CHECKS = [not_a_server_error, content_type_conformance]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def schema(fuzz_stack: Stack) -> Any:
    base = str(fuzz_stack.http.base_url).rstrip("/")
    loaded = schemathesis.openapi.from_url(f"{base}/openapi.json")
    return loaded.exclude(path=ENDLESS)


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str], checks: list[Any]) -> None:
    strategy = operation.as_strategy(generation_mode=mode)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=checks, timeout=10)

    run()


@pytest.mark.parametrize(
    ("mode", "checks"), [(GenerationMode.POSITIVE, POSITIVE_CHECKS), (GenerationMode.NEGATIVE, NEGATIVE_CHECKS)],
    ids=["valid-input", "invalid-input"],
)  # fmt: skip
def test_every_operation_answers_within_its_contract(
    schema: Any, fuzz_stack: Stack, mode: GenerationMode, checks: list[Any]
) -> None:
    base = str(fuzz_stack.http.base_url).rstrip("/")
    operations = _operations(schema)
    assert len(operations) >= 25, "the schema lists every route"
    failures: list[str] = []
    for operation in operations:
        for key in (ADMIN_KEY, SUBMIT_KEY):
            try:
                _fuzz(operation, mode, base, {"Authorization": f"Bearer {key}"}, checks)
            except Unsatisfiable:  # no parameter or body to get wrong (GET /live): nothing invalid to send
                continue
            except Exception as exc:  # collect every operation's failure, then fail once
                failures.append(f"{operation.label} ({'admin' if key == ADMIN_KEY else 'submit'}): {exc}"[:2000])
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(
    "send",
    [
        lambda h: h.post("/api/v1/tasks/summarize/", content=b'{"content": "x"', headers=JSON),
        lambda h: h.post("/api/v1/tasks/summarize/", json={"content": "a\u0000b"}),
        lambda h: h.post("/api/v1/tasks/summarize/", content=b'{"content": 1' + b"0" * 5000 + b"}",
                         headers=JSON),
        lambda h: h.post("/api/v1/tasks/summarize/", content=b'{"content": "\\ud800"}',
                         headers=JSON),
        lambda h: h.post("/api/v1/tasks/summarize/bulk", json={"items": [{"content": "x"}] * 21}),
        lambda h: h.get("/api/v1/tasks/..%2F..%2Fetc%2Fpasswd"),
        lambda h: h.get("/api/v1/tasks/", params={"limit": "9" * 60}),
        lambda h: h.get("/api/v1/queues/..%2Fdlq/tasks"),
        lambda h: h.post("/api/v1/tasks/summarize/", content=b"x" * (3 * 1024 * 1024)),
    ],
    ids=["malformed-json", "control-char", "huge-number", "lone-surrogate", "bulk-too-big", "traversal-id",
         "huge-limit", "traversal-queue", "huge-body"],
)  # fmt: skip
def test_hostile_requests_get_json_4xx_on_the_real_server(fuzz_stack: Stack, send: Callable[[Any], Any]) -> None:
    response = send(fuzz_stack.http)
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()) >= {"code", "message"}


def test_redis_holds_only_well_formed_tasks_and_no_log_holds_a_secret(fuzz_stack: Stack) -> None:
    """Runs after the fuzzing (module order): every stored task parses, its content is clean text,
    its owner is a key id; and no secret appears in any process's log."""
    pattern = fuzz_stack.keys.task("*")
    checked = 0
    for key in fuzz_stack.redis.scan_iter(match=pattern, count=500):
        if key.endswith(":history"):
            for entry in fuzz_stack.redis.lrange(key, 0, -1):
                assert not any(secret in entry for secret in SECRETS)
                json.loads(entry)
            continue
        task = Task.from_hash(fuzz_stack.redis.hgetall(key))
        uuid.UUID(task.id)
        assert task.owner in ("fuzz-admin", "fuzz-submit") and task.content.strip()
        assert not any(ord(c) < 32 and c not in "\t\n\r" for c in task.content)
        checked += 1
    assert checked > 0, "the fuzzing stored tasks"
    for name in fuzz_stack.procs:
        text = fuzz_stack.log(name)
        for secret in SECRETS:
            assert secret not in text, f"{name}.log holds a secret ({secret[:8]}…)"
