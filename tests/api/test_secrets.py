"""Secrets stay secret: the LLM key, the API keys and the Redis password appear in no log line, error,
response or task history; Redis AUTH and TLS work through the URL, whose password is redacted."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from api.main import create_app
from core.redis import reachable
from core.settings import Settings
from tests.api.auth_helpers import ADMIN, ADMIN_KEY, ALICE, ALICE_KEY, BOB_KEY, keyed
from tests.api.conftest import serve
from tests.integration.stack import STARTUP_TIMEOUT, wait_until
from utils.redis_server import free_port

pytestmark = pytest.mark.anyio

LLM_KEY = "sk-or-v1-TESTSECRET0123456789abcdef"
REDIS_PASSWORD = "redis-Secret-8f2a9c"


def _certificates(workdir: Path) -> Path | None:
    """A self-signed CA and a server certificate for 127.0.0.1 (openssl), or None without openssl."""
    if shutil.which("openssl") is None:
        return None
    run = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
           "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(workdir / "tls.key"),
           "-out", str(workdir / "tls.crt")]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    return workdir / "tls.crt"


@pytest.fixture(params=["password", "password+tls"])
def secured_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A private redis-server that requires a password (and, for `+tls`, speaks only TLS); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server")
    port = free_port()
    args = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
            "--requirepass", REDIS_PASSWORD]  # fmt: skip
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    if request.param.endswith("tls"):
        cert = _certificates(tmp_path)
        if cert is None:
            pytest.skip("needs openssl")
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file",
                 str(tmp_path / "tls.key"), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]  # fmt: skip
        url = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    else:
        args += ["--port", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if request.param.endswith("tls"):
            wait_until(lambda: proc.poll() is not None or _tls_up(url), STARTUP_TIMEOUT, what="redis over TLS")
            if proc.poll() is not None:
                pytest.skip(f"this redis-server has no TLS: {proc.stdout.read()[:200]!r}")  # type: ignore[union-attr]
        else:
            wait_until(lambda: reachable(url), STARTUP_TIMEOUT, what="redis with a password")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _tls_up(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _settings(url: str, **extra: object) -> Settings:
    base = Settings(_env_file=None, redis_url=url, redis_key_prefix="sec:", openrouter_api_key=SecretStr(LLM_KEY),
                    list_page_max=20)  # fmt: skip
    return keyed(base, **extra)


async def test_auth_and_tls_work_through_the_url_and_the_password_is_redacted(
    secured_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async for client in serve(create_app(_settings(secured_redis))):
        submitted = await client.post("/api/v1/tasks/summarize/", json={"content": "Over TLS."}, headers=ALICE)
        assert submitted.status_code == 202, submitted.text
        task = (await client.get(f"/api/v1/tasks/{submitted.json()['task_id']}", headers=ALICE)).json()
        health = (await client.get("/health")).json()
        diagnostics = (await client.get("/health/workers/diagnostics", headers=ADMIN)).json()

        assert task["content"] == "Over TLS."
        scheme = secured_redis.partition(":")[0]
        assert health["redis"] == "ok" and health["redis_url"].startswith(f"{scheme}://:***@127.0.0.1:")
        assert diagnostics["redis"]["url"] == health["redis_url"]
        for text in (str(health), str(diagnostics), caplog.text):
            assert REDIS_PASSWORD not in text


async def test_a_wrong_redis_password_is_a_503_that_does_not_leak_it(
    secured_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = secured_redis.replace(REDIS_PASSWORD, "not-the-Password-77")
    async for client in serve(create_app(_settings(wrong)), raise_app_exceptions=False):
        response = await client.post("/api/v1/tasks/summarize/", json={"content": "x"}, headers=ALICE)
        health = await client.get("/health")
        assert (response.status_code, response.json()["code"]) == (503, "redis_unavailable")
        assert health.status_code == 503
        for text in (response.text, health.text, caplog.text):
            assert "not-the-Password-77" not in text


async def test_no_secret_reaches_logs_responses_or_history(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every kind of request, with keys right, wrong and short of scope, and failures written into a
    task's history: neither the LLM key nor any API key shows up anywhere."""
    caplog.set_level(logging.DEBUG)
    settings = _settings(redis_url).model_copy(update={"redis_key_prefix": key_prefix})
    seen: list[str] = []
    async for client in serve(create_app(settings)):
        submitted = await client.post("/api/v1/tasks/summarize/", json={"content": "x"}, headers=ALICE)
        task_id = submitted.json()["task_id"]
        requests = [
            ("GET", f"/api/v1/tasks/{task_id}", ALICE), ("GET", "/api/v1/tasks/", {"X-API-Key": BOB_KEY}),
            ("GET", "/metrics", ALICE), ("GET", "/metrics", {"X-API-Key": ALICE_KEY + "x"}),
            ("GET", "/health/workers/diagnostics", ADMIN), ("GET", "/health", {}), ("GET", "/openapi.json", {}),
            ("POST", f"/api/v1/tasks/{task_id}/cancel", ADMIN), ("GET", f"/api/v1/tasks/{task_id}", ADMIN),
            ("POST", "/api/v1/tasks/summarize/", {"Authorization": f"Bearer {ADMIN_KEY[:-1]}"}),
            ("POST", "/api/v1/tasks/summarize/", ALICE),  # no body: a 422 that lists what was sent
        ]  # fmt: skip
        for method, path, headers in requests:
            response = await client.request(method, path, headers=headers)
            seen.append(f"{response.status_code} {response.headers} {response.text}")
    everything = "\n".join([*seen, caplog.text])
    for secret in (LLM_KEY, ADMIN_KEY, ALICE_KEY, BOB_KEY, ADMIN_KEY[:-1]):
        assert secret not in everything, f"a secret leaked: {secret[:8]}…"
    assert "401" in everything and "403" in everything  # the refusals did happen


def test_the_settings_never_print_a_secret() -> None:
    keys = SecretStr("a:admin:" + "0" * 64)
    settings = Settings(_env_file=None, openrouter_api_key=SecretStr(LLM_KEY), api_keys=keys)
    assert LLM_KEY not in repr(settings) and "0" * 64 not in repr(settings)
    assert LLM_KEY not in str(settings.model_dump())


def test_a_log_line_that_quotes_a_secret_is_scrubbed(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Defence in depth: if a library's error text ever quotes the LLM key or the Redis password,
    the API process's log handlers replace it."""
    import anyio

    url = redis_url.replace("redis://", f"redis://:{REDIS_PASSWORD}@")
    app = create_app(_settings(redis_url).model_copy(update={"redis_url": url}))

    async def run() -> None:
        async with app.router.lifespan_context(app):
            logging.getLogger("some.library").warning("failed to reach %s with key %s", url, LLM_KEY)

    anyio.run(run)
    assert "failed to reach" in caplog.text
    assert LLM_KEY not in caplog.text and REDIS_PASSWORD not in caplog.text
