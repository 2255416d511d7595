"""The images, read without building them: the Python image runs what `make run` runs, as a
non-root user, with the project's dependencies; the frontend image serves a Vite build through
an nginx config that nginx itself accepts and that keeps the event stream unbuffered."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.deploy.compose import ROOT, module_exists, procfile, resolved

DOCKERFILE = ROOT / "Dockerfile"
FRONTEND_DOCKERFILE = ROOT / "frontend" / "Dockerfile"
NGINX_CONF = ROOT / "frontend" / "nginx.conf"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def last(path: Path, name: str) -> str:
    return [args for instr, args in instructions(path) if instr == name][-1]


def test_the_default_command_is_a_make_run_command() -> None:
    cmd = json.loads(last(DOCKERFILE, "CMD"))
    assert cmd in procfile().values()
    assert not [i for i, _ in instructions(DOCKERFILE) if i == "ENTRYPOINT"], "compose's commands run as given"


def test_the_image_copies_every_module_the_services_run() -> None:
    copied = {args.split()[0] for instr, args in instructions(DOCKERFILE) if instr == "COPY" and "--from" not in args}
    for name, service in resolved()["services"].items():
        if service.get("image") != "asynctaskflow:latest":
            continue
        module = [*(service.get("entrypoint") or []), *(service.get("command") or [])][2]
        assert module_exists(module)
        assert module.split(".")[0] in copied, f"{name} runs {module}, which the image lacks"
    for package in ("core", "api", "worker", "consumer", "utils"):
        assert package in copied


def test_non_root_slim_with_a_health_check() -> None:
    steps = instructions(DOCKERFILE)
    bases = [args for instr, args in steps if instr == "FROM"]
    assert all("-slim" in base for base in bases)
    user = last(DOCKERFILE, "USER")
    assert user not in ("root", "0") and user == "app"
    assert [i for i, _ in steps].index("USER") > max(n for n, (i, _) in enumerate(steps) if i in ("COPY", "RUN"))
    assert "CMD" in last(DOCKERFILE, "HEALTHCHECK")


def test_no_syntax_directive_so_a_build_needs_no_docker_hub_frontend() -> None:
    """`# syntax=` makes BuildKit fetch a frontend image before building anything; nothing here
    needs a newer syntax than the engine's own."""
    for path in (DOCKERFILE, FRONTEND_DOCKERFILE):
        assert not re.search(r"^#\s*syntax\s*=", path.read_text(), flags=re.M | re.I), path


def _user_commands() -> list[list[str]]:
    run = next(args for instr, args in instructions(DOCKERFILE) if instr == "RUN" and "useradd" in args)
    return [shlex.split(part) for part in run.split("&&")]


def test_the_app_user_is_a_regular_user_with_its_own_group() -> None:
    commands = _user_commands()
    assert [c[0] for c in commands] == ["groupadd", "useradd"]
    groupadd, useradd = commands
    assert "--system" not in groupadd + useradd, "a system uid above SYS_UID_MAX (999) warns"
    gid = groupadd[groupadd.index("--gid") + 1]
    assert useradd[useradd.index("--uid") + 1] == gid == "10001"
    assert useradd[useradd.index("--gid") + 1] == groupadd[-1] == useradd[-1] == last(DOCKERFILE, "USER")


@pytest.mark.skipif(
    shutil.which("useradd") is None or os.geteuid() != 0 or not Path("/etc/login.defs").exists(),
    reason="needs root and Debian's useradd (the image's base is Debian too)",
)
def test_the_user_commands_run_without_a_warning(tmp_path: Path) -> None:
    """The Dockerfile's own groupadd/useradd, run with --prefix on a copy of this machine's
    account files (Debian's login.defs, as in the python:slim base): no warning, uid and gid 10001."""
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        shutil.copy(Path("/etc") / name, tmp_path / "etc" / name)
    output = ""
    for command in _user_commands():
        done = subprocess.run([command[0], "--prefix", str(tmp_path), *command[1:]], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        output += done.stdout + done.stderr
    assert "warning" not in output.lower(), output
    passwd = [line for line in (tmp_path / "etc" / "passwd").read_text().splitlines() if line.startswith("app:")]
    group = [line for line in (tmp_path / "etc" / "group").read_text().splitlines() if line.startswith("app:")]
    assert passwd[0].split(":")[2:4] == ["10001", "10001"] and group[0].split(":")[2] == "10001"


def test_dependencies_come_from_pyproject() -> None:
    """The image installs pyproject's runtime list (the one place versions are pinned)."""
    run = " ".join(args for instr, args in instructions(DOCKERFILE) if instr == "RUN")
    assert "tomllib" in run and "['project']['dependencies']" in run
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def test_dockerignore_keeps_secrets_and_local_state_out_but_not_the_code() -> None:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            if fnmatch(path, pattern.lstrip("!").replace("**/", "")) or fnmatch(path, pattern.lstrip("!")):
                result = not negate
        return result

    for path in (".env", ".env.production", ".venv", ".git", ".run", "frontend/dist", "frontend/node_modules"):
        assert ignored(path), path
    for path in ("core", "api", "worker", "consumer", "utils", "pyproject.toml", "frontend", "frontend/nginx.conf"):
        assert not ignored(path), path


def test_the_frontend_image_builds_the_vite_app_and_serves_it_with_our_config() -> None:
    steps = instructions(FRONTEND_DOCKERFILE)
    runs = [args for instr, args in steps if instr == "RUN"]
    assert any("npm ci" in r for r in runs) and any("npm run build" in r for r in runs)
    copies = [args for instr, args in steps if instr == "COPY"]
    assert "frontend/nginx.conf /etc/nginx/conf.d/default.conf" in copies
    assert any(c.startswith("--from=build") and c.split()[1].endswith("/dist") for c in copies)
    assert "3000" in last(FRONTEND_DOCKERFILE, "EXPOSE")
    assert resolved()["services"]["frontend"]["build"] == {"context": ".", "dockerfile": "frontend/Dockerfile"}


def _location(conf: str, opening: str) -> str:
    start = conf.index(opening)
    return conf[start : conf.index("}", start)]


def test_nginx_proxies_the_api_health_and_the_unbuffered_stream() -> None:
    conf = NGINX_CONF.read_text()
    assert re.search(r"^\s*listen 3000;", conf, flags=re.M)
    assert "set $api http://api:8000;" in conf
    for opening in ("location /api/ {", "location = /health {"):
        assert "proxy_pass $api;" in _location(conf, opening)
    stream = _location(conf, "location ~ ^/api/v1/")
    assert "proxy_buffering off;" in stream and "X-Accel-Buffering no" in stream and "proxy_cache off;" in stream
    pattern = re.search(r"location ~ (\S+) \{", conf)
    assert pattern is not None
    for path in ("/api/v1/events", "/api/v1/tasks/stream", "/api/v1/queues/events/"):
        assert re.match(pattern.group(1), path), path
    assert not re.match(pattern.group(1), "/api/v1/tasks/123")


def test_nginx_passes_the_api_docs_to_the_api() -> None:
    """:3000 answers /docs and /openapi.json with the API's pages, not the dashboard's HTML."""
    conf = NGINX_CONF.read_text()
    docs = re.search(r"location ~ (\^/\(docs\S*) \{", conf)
    assert docs is not None and "proxy_pass $api;" in _location(conf, docs.group(0))
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert re.match(docs.group(1), path), path
    for path in ("/documents", "/", "/tasks", "/openapi.jsonx"):
        assert not re.match(docs.group(1), path), path


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    """`nginx -t` on the config inside a minimal main config, as the nginx image includes it."""
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path};\n include {NGINX_CONF};\n}}\n"
    )
    result = subprocess.run(["nginx", "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
