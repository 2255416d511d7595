"""The redis service's command and health check, run for real with the local redis-server and
redis-cli (on a free port instead of the container's 6379): AOF on, noeviction, the optional
password required when set, and the URL the app containers get authenticates."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.deploy.compose import env_example, resolved
from tests.integration.stack import STARTUP_TIMEOUT, wait_until
from utils.redis_server import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None, reason="needs redis-server, redis-cli"
)


class RedisService:
    """The redis container's command under `sh -c`, as the image runs it, plus its health check."""

    def __init__(self, password: str, workdir: Path) -> None:
        self.port = free_port()
        self.services = resolved({**env_example(), "REDIS_PASSWORD": password})["services"]
        service = self.services["redis"]
        # Compose interpolates after parsing, so an empty value is "", not YAML's null.
        self.env = {**os.environ, **{k: v or "" for k, v in service["environment"].items()}}
        shell, flag, script = service["command"]
        assert script.startswith("exec docker-entrypoint.sh redis-server "), "the image's entrypoint drops root"
        script = script.replace("docker-entrypoint.sh ", "", 1)  # the image's wrapper; not on this machine
        local = f" --port {self.port} --bind 127.0.0.1 --dir {workdir}"
        self.proc = subprocess.Popen([shell, flag, script + local], env=self.env, stdout=subprocess.DEVNULL)
        self.url = self.services["worker"]["environment"]["REDIS_URL"].replace("@redis:6379", f"@127.0.0.1:{self.port}")
        wait_until(lambda: self.health() == 0, STARTUP_TIMEOUT, what="the redis service to answer its health check")

    def health(self) -> int:
        kind, test = self.services["redis"]["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        test = test.replace("redis-cli", f"redis-cli -p {self.port}", 1)
        return subprocess.run(["sh", "-c", test], env=self.env, capture_output=True, timeout=10).returncode

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(params=["s3cret-pw"], ids=["password"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisService]:
    svc = RedisService(request.param, tmp_path)
    yield svc
    svc.stop()


def test_the_app_url_reaches_it_and_it_persists_and_never_evicts(service: RedisService) -> None:
    client = redis.Redis.from_url(service.url, decode_responses=True)
    assert client.ping()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    client.close()


def test_the_password_is_required(service: RedisService) -> None:
    anonymous = redis.Redis(port=service.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    assert f":{service.env['REDIS_PASSWORD']}@" in service.url
    anonymous.close()


def test_the_health_check_fails_when_redis_is_down(service: RedisService) -> None:
    service.stop()
    assert service.health() != 0
