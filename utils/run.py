"""`make run`: the whole stack in one terminal (api, Celery worker, consumer, scheduler, and the
dashboard on FRONTEND_PORT, :3000) under honcho, on an embedded Redis when REDIS_URL is
unreachable. The ports are checked first: a port already taken is named with the setting that
moves it, before anything starts. The dashboard is rebuilt first when its sources changed;
without a usable Node.js the rest runs without it. The addresses are printed once the API
answers /ready as AsyncTaskFlow. Ctrl-C stops all of it."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from core.redis import reachable
from core.settings import Settings, get_settings
from utils import frontend_build, redis_server
from utils.probe import api_ready

ROOT = Path(__file__).resolve().parent.parent


def _embedded_redis(url: str) -> subprocess.Popen[bytes] | None:
    """Start a private redis-server (data in .run/redis) when `url` is unreachable."""
    if reachable(url):
        print(f"using Redis at {urlsplit(url).hostname}:{urlsplit(url).port or 6379}")
        return None
    port = urlsplit(url).port or 6379
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
        sys.exit(f"Redis at {urlsplit(url).hostname} is unreachable; start it or unset REDIS_URL")
    print(f"no Redis reachable; starting an embedded one on 127.0.0.1:{port} ({redis_server.find_binary()})")
    return redis_server.start(port, ROOT / ".run" / "redis", appendonly=True)


# The dashboard's process, added to the Procfile's for this run only: the Procfile lists what the
# containers run (tests/deploy holds them equal), and compose serves the dashboard with nginx.
# It reads FRONTEND_PORT itself.
DASHBOARD = "frontend: python -m utils.frontend_server"


# How long to wait for the API to answer /ready before saying so (a loaded machine is slow).
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Port:
    """A port `make run` will listen on, and the setting that moves it."""

    what: str
    host: str
    port: int
    setting: str


def _ports(settings: Settings) -> list[Port]:
    return [
        Port("the API", settings.api_host, settings.api_port, "API_PORT"),
        Port("the dashboard", "127.0.0.1", settings.frontend_port, "FRONTEND_PORT"),
    ]


def _taken(port: Port) -> bool:
    """True when something already listens there. SO_REUSEADDR as uvicorn binds, so a port left
    in TIME_WAIT by the last run does not count as taken."""
    with socket.socket(socket.AF_INET6 if ":" in port.host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((port.host, port.port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _who(port: Port) -> str:
    """Whose port it is, as far as we can tell: our own API answers /ready naming itself."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port.port}") as client:
        if api_ready(client, timeout=1.0):  # on this machine: answered in milliseconds, or not ours
            return "AsyncTaskFlow's API already runs there (another `make run`?)"
    return "another program listens there"


def check_ports(settings: Settings) -> list[str]:
    """One line per port already taken, naming the setting that moves it; empty when all are free."""
    return [
        f"port {p.port} for {p.what} is taken: {_who(p)}. Stop it, or move ours with {p.setting}=<port> "
        f"in .env (or `{p.setting}=<port> make run`)."
        for p in _ports(settings)
        if _taken(p)
    ]


def _dashboard_ready() -> bool:
    """Build the dashboard if its sources changed; False (with the reason printed) when it cannot be."""
    try:
        frontend_build.ensure_build()
    except frontend_build.FrontendUnavailable as exc:
        print(f"dashboard skipped: {exc}; install Node.js >= 20.19 for it (the API works without it)")
        return False
    except subprocess.CalledProcessError as exc:
        print(f"dashboard skipped: `{' '.join(map(str, exc.cmd))}` failed (exit code {exc.returncode})")
        return False
    return True


def _announce_when_ready(settings: Settings, with_dashboard: bool) -> None:
    """Print the addresses once the API answers /ready as AsyncTaskFlow (not before: a stack
    that dies at start-up must not have said "on http://…" first)."""
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    api = f"http://{host}:{settings.api_port}"
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(base_url=api) as client:
        while not api_ready(client):
            if time.monotonic() > deadline:
                print(f"make run: the API did not answer {api}/ready within {READY_TIMEOUT:.0f}s; see its lines above")
                return
            time.sleep(0.5)
    dashboard = f", dashboard on http://127.0.0.1:{settings.frontend_port}" if with_dashboard else ""
    print(f"make run: ready: API on {api} (docs {api}/docs){dashboard}. Ctrl-C stops everything.", flush=True)


def _procfile(with_dashboard: bool) -> Path:
    """The Procfile to run: the repository's, plus the dashboard in .run/Procfile when it is built."""
    procfile = ROOT / "Procfile"
    if not with_dashboard:
        return procfile
    combined = ROOT / ".run" / "Procfile"
    combined.parent.mkdir(exist_ok=True)
    combined.write_text(procfile.read_text().rstrip("\n") + "\n" + DASHBOARD + "\n")
    return combined


def _supervise(command: list[str], env: dict[str, str]) -> int:
    """Run honcho until it ends. SIGTERM is passed on to it (so it stops every process before this
    script stops the embedded Redis); Ctrl-C reaches the whole terminal's group, so honcho is
    already stopping them: wait for it. A Ctrl-C is the normal way to stop: 0, not honcho's 130,
    which make would print as "make: *** Error 130"."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    # A shell starts a background job with Ctrl-C ignored, and Python then leaves it ignored: honcho
    # (which sets its own handler) would stop everything and this script would report its 130.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupted = False
    while True:
        try:
            code = proc.wait()
            return 0 if interrupted else code
        except KeyboardInterrupt:
            interrupted = True


def main() -> int:
    settings = get_settings()
    taken = check_ports(settings)
    if taken:
        print("make run: nothing started:", *taken, sep="\n  ", file=sys.stderr)
        return 1
    redis_proc = _embedded_redis(settings.redis_url)
    provider = "offline: summarize only (no OPENROUTER_API_KEY)" if settings.llm_uses_offline else "OpenRouter"
    print(f"LLM provider: {provider}; API on http://{settings.api_host}:{settings.api_port}")
    # Children run the same interpreter as this script (the project's virtualenv).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}
    try:
        with_dashboard = _dashboard_ready()
        procfile = _procfile(with_dashboard)
        threading.Thread(target=_announce_when_ready, args=(settings, with_dashboard), daemon=True).start()
        return _supervise([sys.executable, "-m", "honcho", "start", "-d", str(ROOT), "-f", str(procfile)], env)
    except KeyboardInterrupt:  # during the build: stopped as asked, nothing else was started
        print("make run: stopped")
        return 0
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
