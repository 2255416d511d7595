"""docker-compose.yml checked without a Docker engine: the compose-spec schema, the wiring of
every service (health checks, depends_on, grace periods, restart policies), the variables
against .env.example and the settings, and the commands against the code and `make run`."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from core.settings import Settings
from tests.deploy.compose import (
    COMPOSE_FILE,
    ROOT,
    env_example,
    interpolate,
    module_exists,
    procfile,
    raw,
    resolved,
    used_variables,
    variables,
)
from worker.container import STOP_MARGIN, WORKER_COMMAND

APP_SERVICES = ("api", "worker", "scheduler", "reset")
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def seconds(duration: str) -> float:
    """A Compose duration (90s, 1m30s, 2m) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for char in duration:
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * units[char]
            number = ""
    return total + (float(number) if number else 0)


def argv(service: dict[str, Any]) -> list[str]:
    return [*(service.get("entrypoint") or []), *(service.get("command") or [])]


@pytest.mark.parametrize("source", ["as written", "interpolated"])
def test_the_file_satisfies_the_compose_spec_schema(source: str, tmp_path: Path) -> None:
    path = COMPOSE_FILE
    if source == "interpolated":
        path = tmp_path / "docker-compose.yml"
        path.write_text(yaml.safe_dump(resolved()))
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


HA_SERVICES = ("redis-replica-1", "redis-replica-2", "sentinel-1", "sentinel-2", "sentinel-3")


def test_the_services_of_the_design() -> None:
    services = resolved()["services"]
    assert set(services) == {"redis", "api", "worker", "scheduler", "frontend", "reset", *HA_SERVICES}
    assert services["reset"]["profiles"] == ["tools"]
    assert all(services[name]["profiles"] == ["ha"] for name in HA_SERVICES)
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["frontend"]["ports"] == ["127.0.0.1:3000:3000"]


def test_ports_are_published_on_the_loopback_unless_asked() -> None:
    """By default nothing listens on the host's public interfaces; the documented form moves it."""
    example = env_example()
    assert example["API_PUBLISH"] == "127.0.0.1:8000" and example["FRONTEND_PUBLISH"] == "127.0.0.1:3000"
    assert {name: defaults for name, defaults in used_variables().items() if name.endswith("_PUBLISH")} == {
        "API_PUBLISH": ["127.0.0.1:8000"],
        "FRONTEND_PUBLISH": ["127.0.0.1:3000"],
    }
    opened = resolved({**env_example(), "REDIS_PASSWORD": "pw", "API_PUBLISH": "0.0.0.0:8080"})
    assert opened["services"]["api"]["ports"] == ["0.0.0.0:8080:8000"]


@pytest.mark.parametrize("name", ["redis", "api", "worker", "scheduler", "frontend", "reset"])
def test_every_service_has_health_check_grace_period_and_restart_policy(name: str) -> None:
    service = resolved()["services"][name]
    check = service["healthcheck"]
    assert check.get("disable") is not True and check["test"][0] in ("CMD", "CMD-SHELL")
    assert {"interval", "timeout", "retries", "start_period"} <= check.keys()
    assert seconds(service["stop_grace_period"]) > 0
    assert service["restart"] == ("no" if name == "reset" else "unless-stopped")


def test_every_dependency_exists_and_waits_until_healthy() -> None:
    services = resolved()["services"]
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert condition == {"condition": "service_healthy"}, name
            assert "healthcheck" in services[target], f"{name} waits for {target}, which has no health check"
    assert {name for name, s in services.items() if "redis" in s.get("depends_on", {})} == {*APP_SERVICES, *HA_SERVICES}
    assert "api" in services["frontend"]["depends_on"]


def test_every_variable_used_is_in_env_example() -> None:
    used = used_variables()
    assert used, "the parser finds the variables"
    missing = set(used) - set(env_example())
    assert missing == set(), "variables docker-compose.yml uses that .env.example does not document"
    required = {name for name, defaults in used.items() if None in defaults}
    assert required == {"REDIS_PASSWORD"}, "every use has a default but the password, which each user must choose"


def test_defaults_in_compose_equal_env_example_and_the_settings() -> None:
    """A knob means the same with or without .env, and in compose as in `make run`."""
    example = env_example()
    fields = Settings.model_fields
    for name, defaults in used_variables().items():
        for default in (d for d in defaults if d is not None):
            assert default == example[name], f"{name}: compose says {default}, .env.example {example[name]}"
            if name.lower() in fields:
                assert str(default) == _plain(fields[name.lower()].get_default(call_default_factory=True)), name


def _plain(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or value == {}:  # an empty mapping (API_KEY_LIMITS) is an empty variable
        return ""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def test_the_worker_knobs_are_wired() -> None:
    worker = raw()["services"]["worker"]
    env = worker["environment"]
    for name in (
        "CELERY_WORKER_CONCURRENCY",
        "WORKER_PREFETCH",
        "WORKER_MAX_MEMORY_PER_CHILD",
        "WORKER_MAX_TASKS_PER_CHILD",
        "CELERY_TASK_TIME_LIMIT",
        "CELERY_TASK_SOFT_TIME_LIMIT",
        "OPENROUTER_TIMEOUT",
    ):
        assert env[name].startswith("${" + name + ":-"), name
    deploy = worker["deploy"]
    assert deploy["replicas"].startswith("${WORKER_REPLICAS:-")
    assert deploy["resources"]["limits"] == {"cpus": "${WORKER_CPU_LIMIT:-1}", "memory": "${WORKER_MEMORY_LIMIT:-1g}"}
    reservations = deploy["resources"]["reservations"]
    assert reservations == {"cpus": "${WORKER_CPU_RESERVATION:-0.5}", "memory": "${WORKER_MEMORY_RESERVATION:-256m}"}
    assert worker["stop_grace_period"].startswith("${WORKER_STOP_GRACE_PERIOD:-")
    for field in ("interval", "timeout", "retries", "start_period"):
        assert worker["healthcheck"][field].startswith("${HEALTHCHECK_" + field.upper())


def test_values_from_env_reach_the_containers() -> None:
    env = {**env_example(), "WORKER_REPLICAS": "5", "CELERY_WORKER_CONCURRENCY": "200", "REDIS_PASSWORD": "pw"}
    env |= {"WORKER_MEMORY_LIMIT": "3g", "HEALTHCHECK_INTERVAL": "7s", "WORKER_STOP_GRACE_PERIOD": "2m"}
    worker = resolved(env)["services"]["worker"]
    assert worker["deploy"]["replicas"] == 5 and worker["deploy"]["resources"]["limits"]["memory"] == "3g"
    assert worker["environment"]["CELERY_WORKER_CONCURRENCY"] == 200
    assert worker["environment"]["REDIS_URL"] == "redis://:pw@redis:6379/0"
    assert worker["healthcheck"]["interval"] == "7s" and worker["stop_grace_period"] == "2m"


def test_the_cpu_defaults_fit_a_one_cpu_host() -> None:
    """Docker refuses a limit above the host's CPUs ("Range of CPUs is from 0.01 to 1.00"), so
    with the defaults the workers must be creatable on the smallest host."""
    resources = resolved()["services"]["worker"]["deploy"]["resources"]
    assert 0 < float(resources["limits"]["cpus"]) <= 1
    assert 0 < float(resources["reservations"]["cpus"]) <= float(resources["limits"]["cpus"])


def test_the_grace_period_covers_the_drain() -> None:
    """Docker kills a worker container after its grace period: it must outlast the container's
    own bounds (the consumer's drain, then a running LLM call), or a stop cuts the drain short."""
    example = env_example()
    grace = seconds(example["WORKER_STOP_GRACE_PERIOD"])
    drain = float(example["CONSUMER_SHUTDOWN_GRACE"])
    call = float(example["OPENROUTER_TIMEOUT"])
    assert grace >= max(drain, call) + STOP_MARGIN


def test_worker_replicas_never_share_a_worker_id() -> None:
    """Each replica's queue is named by WORKER_ID, which defaults to the container id."""
    assert "WORKER_ID" not in env_example(), ".env.example must leave WORKER_ID commented out"
    for name in APP_SERVICES:
        assert "WORKER_ID" not in (raw()["services"][name].get("environment") or {})
        assert "hostname" not in raw()["services"][name]


def test_every_command_names_a_module_of_the_repo() -> None:
    services = resolved()["services"]
    for name in APP_SERVICES:
        command = argv(services[name])
        assert command[:2] == ["python", "-m"], f"{name}: {command}"
        assert module_exists(command[2]), f"{name}: no module {command[2]} in the repository"
    assert argv(services["reset"]) == ["python", "-m", "utils.reset_redis"], "arguments of `run reset` follow it"


def test_the_containers_run_what_make_run_runs() -> None:
    services, procs = resolved()["services"], procfile()
    assert argv(services["api"]) == procs["api"]
    assert argv(services["scheduler"]) == procs["scheduler"]
    assert argv(services["worker"]) == ["python", "-m", "worker.container"]
    # The worker container is the consumer's `serve` with the Celery worker as its child.
    assert (procs["worker"], procs["consumer"]) == (WORKER_COMMAND, ["python", "-m", "consumer"])
    assert set(procs) == {"api", "worker", "consumer", "scheduler"}, "a new process needs a container"


def test_the_app_services_share_one_image_built_once_and_reach_the_compose_redis() -> None:
    services = resolved()["services"]
    assert len({services[name]["image"] for name in APP_SERVICES}) == 1
    built = [name for name, service in services.items() if service.get("image") == services["api"]["image"]]
    assert sorted(built) == sorted(APP_SERVICES)
    assert [name for name in built if "build" in services[name]] == ["api"], "one build for the four services"
    assert services["api"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert services["api"]["pull_policy"] == "build", "our image is built, never pulled from a registry"
    for name in APP_SERVICES:
        if name != "api":
            assert services[name]["pull_policy"] == "never", f"{name} runs the image the api service built"
        assert services[name]["environment"]["REDIS_URL"] == "redis://:chosen-pw@redis:6379/0"
        assert services[name]["init"] is True, "tini forwards SIGTERM and reaps zombies"
    assert services["api"]["environment"]["API_HOST"] == "0.0.0.0"


# Which code each container runs (core/ is read by all, the breaker with it): a setting read there
# must reach it.
ROLE_CODE = {
    "api": ["api"],
    "worker": ["worker", "consumer"],
    "scheduler": ["consumer/scheduler.py", "consumer/service.py"],
    "reset": ["utils/reset_redis.py"],
}
# Left unset on purpose: each worker replica is then named by its container id.
UNSET = {"worker_id"}


def _fields_read(paths: list[str]) -> set[str]:
    """The settings a body of code reads: each field named in it, and the fields behind each
    property of Settings it names (task_lease_seconds reads celery_task_time_limit, ...)."""
    fields = set(Settings.model_fields)
    derived = {
        name: set(re.findall(r"self\.(\w+)", inspect.getsource(prop.fget))) & fields  # type: ignore[arg-type]
        for name, prop in vars(Settings).items()
        if isinstance(prop, property)
    }
    files = [f for p in paths for f in ([ROOT / p] if p.endswith(".py") else (ROOT / p).rglob("*.py"))]
    words = {word for f in files if f.name != "settings.py" for word in re.findall(r"\w+", f.read_text())}
    read = words & fields
    for name, behind in derived.items():
        if name in words:
            read |= behind
    return read - UNSET


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_container_gets_every_setting_its_code_reads(name: str) -> None:
    env = resolved()["services"][name]["environment"]
    needed = _fields_read([*ROLE_CODE[name], "core"])
    missing = {field.upper() for field in needed} - set(env)
    assert missing == set(), f"{name} reads these settings, but docker-compose.yml does not pass them"


def test_no_container_gets_all_of_env_and_secrets_go_only_where_needed() -> None:
    services = resolved()["services"]
    assert [name for name, service in services.items() if "env_file" in service] == []
    holders = {
        secret: sorted(name for name, s in services.items() if secret in (s.get("environment") or {}))
        for secret in ("REDIS_PASSWORD", "API_KEYS", "OPENROUTER_API_KEY")
    }
    redis_nodes = sorted(["redis", *HA_SERVICES])
    assert holders == {"REDIS_PASSWORD": redis_nodes, "API_KEYS": ["api"], "OPENROUTER_API_KEY": ["api", "worker"]}
    assert "environment" not in services["frontend"]


def test_compose_refuses_to_start_without_a_redis_password() -> None:
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        resolved(env_example())


def test_redis_is_private_persistent_and_never_evicts() -> None:
    redis = resolved()["services"]["redis"]
    assert "ports" not in redis, "Redis must not be published on the host by default"
    assert redis["image"].split(":")[1].startswith("7.")
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in resolved()["volumes"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert '--requirepass "$REDIS_PASSWORD"' in command


def test_the_ha_profile_is_a_master_two_replicas_and_three_sentinels() -> None:
    """What docs/DEPLOYMENT.md tells an operator to put in .env for `--profile ha` names these."""
    services = resolved({**env_example(), "REDIS_PASSWORD": "pw", "REDIS_MIN_REPLICAS_TO_WRITE": "1"})["services"]
    for name in ("redis", "redis-replica-1", "redis-replica-2"):
        command = " ".join(services[name]["command"])
        assert "--appendonly yes" in command and "--min-replicas-to-write 1" in command, name
        assert '--masterauth "$REDIS_PASSWORD"' in command, f"{name} must follow a new master after a failover"
        assert ("--replicaof redis 6379" in command) == (name != "redis")
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        config = " ".join(services[name]["command"])
        assert "sentinel monitor atf redis 6379 2" in config and "down-after-milliseconds atf 3000" in config
        assert services[name]["environment"]["ANNOUNCE"] == name
    guide = (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    assert "REDIS_SENTINELS=sentinel-1:26379,sentinel-2:26379,sentinel-3:26379" in guide
    assert "docker compose --profile ha up -d" in guide


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
@pytest.mark.parametrize("extra", [{"REDIS_PASSWORD": "pw"}, {"WORKER_REPLICAS": "4", "REDIS_PASSWORD": "s3cret"}])
def test_docker_compose_accepts_the_file(extra: dict[str, str], tmp_path: Path) -> None:
    """`docker-compose config` (Debian's) with .env.example as `.env`, as a user would have it."""
    for name in ("docker-compose.yml", "Dockerfile", "frontend", "core", "api", "worker", "consumer", "utils"):
        (tmp_path / name).symlink_to(ROOT / name)
    lines = [f"{k}={v}" for k, v in {**env_example(), **extra}.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    base = ["docker-compose", "--profile", "tools", "config"]
    result = subprocess.run([*base, "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(subprocess.run(base, cwd=tmp_path, capture_output=True, text=True, timeout=120).stdout)
    worker = config["services"]["worker"]
    assert worker["deploy"]["replicas"] == int(extra.get("WORKER_REPLICAS", "2"))
    assert worker["environment"]["REDIS_URL"] == f"redis://:{extra['REDIS_PASSWORD']}@redis:6379/0"
    assert "API_KEYS" not in worker["environment"] and "API_HOST" not in worker["environment"], "only its settings"
    for name, service in config["services"].items():
        assert "env_file" not in service, name


def test_interpolation_follows_compose_rules() -> None:
    text = "a ${X:-d} b ${Y-e} c $${Z} d ${W:+on}"
    assert interpolate(text, {"X": "", "Y": "", "W": "1"}) == "a d b  c ${Z} d on"
    assert set(variables(text)) == {"X", "Y", "W"}
