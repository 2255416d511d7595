"""The real stack for fuzzing: API keys configured, a distinctive LLM key, and its own Redis that
requires a password, so every process reaches Redis with AUTH through the URL."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.auth import hash_key
from core.redis import reachable
from tests.integration.stack import STARTUP_TIMEOUT, Stack, wait_until
from tests.stub_llm import StubLLM
from utils.redis_server import free_port

pytestmark = pytest.mark.fuzz

ADMIN_KEY = "atf_fuzz-admin-Wq4zR8tY2u"
SUBMIT_KEY = "atf_fuzz-submit-Pk7xM1nV5b"
LLM_KEY = "sk-or-v1-FUZZSECRET-5c1d9e7a3b"
REDIS_PASSWORD = "fuzz-Redis-Pw-41f7"
SECRETS = (ADMIN_KEY, SUBMIT_KEY, LLM_KEY, REDIS_PASSWORD)


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server")
    port, workdir = free_port(), tmp_path_factory.mktemp("fuzz-redis")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--requirepass", REDIS_PASSWORD]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    try:
        wait_until(lambda: reachable(url), STARTUP_TIMEOUT, what="the fuzz Redis",
                   alive=lambda: None if proc.poll() is None else f"redis-server exited with {proc.returncode}")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def fuzz_stack(protected_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    llm = StubLLM(delay=0.01)
    llm.start()
    workdir: Path = tmp_path_factory.mktemp("fuzz-stack")
    keys = f"fuzz-admin:admin:{hash_key(ADMIN_KEY)},fuzz-submit:submit:{hash_key(SUBMIT_KEY)}"
    stack = Stack(protected_redis, llm.url, workdir, API_KEYS=keys, AUTH_REQUIRED="true", OPENROUTER_API_KEY=LLM_KEY,
                  DIAGNOSTICS_TIMEOUT="0.2", LIST_PAGE_MAX="50", BULK_MAX_ITEMS="20", SUBMIT_RATE_BURST="1000",
                  SUBMIT_RATE_PER_SECOND="1000", LOG_LEVEL="DEBUG")  # fmt: skip
    stack.http.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    try:
        stack.start_all()
        yield stack
    finally:
        stack.stop()
        llm.stop()
