"""`make run`: the whole stack in one terminal (api, Celery worker, consumer, scheduler, and the
dashboard on :3000) under honcho, on an embedded Redis when REDIS_URL is unreachable. The
dashboard is rebuilt first when its sources changed; without a usable Node.js the rest runs
without it. Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from core.settings import get_settings
from utils import frontend_build, redis_server
from utils.frontend_server import DEFAULT_PORT

ROOT = Path(__file__).resolve().parent.parent


def _embedded_redis(url: str) -> subprocess.Popen[bytes] | None:
    """Start a private redis-server (data in .run/redis) when `url` is unreachable."""
    if redis_server.reachable(url):
        print(f"using Redis at {urlsplit(url).hostname}:{urlsplit(url).port or 6379}")
        return None
    port = urlsplit(url).port or 6379
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
        sys.exit(f"Redis at {urlsplit(url).hostname} is unreachable; start it or unset REDIS_URL")
    print(f"no Redis reachable; starting an embedded one on 127.0.0.1:{port} ({redis_server.find_binary()})")
    return redis_server.start(port, ROOT / ".run" / "redis", appendonly=True)


# The dashboard's process, added to the Procfile's for this run only: the Procfile lists what the
# containers run (tests/deploy holds them equal), and compose serves the dashboard with nginx.
DASHBOARD = "frontend: python -m utils.frontend_server"


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
    print(f"dashboard on http://127.0.0.1:{DEFAULT_PORT}")
    return True


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
    already stopping them: wait for it."""
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def main() -> int:
    settings = get_settings()
    redis_proc = _embedded_redis(settings.redis_url)
    provider = "offline extractive summarizer (no OPENROUTER_API_KEY)" if settings.llm_uses_offline else "OpenRouter"
    print(f"LLM provider: {provider}; API on http://{settings.api_host}:{settings.api_port}")
    # Children run the same interpreter as this script (the project's virtualenv).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}
    try:
        procfile = _procfile(_dashboard_ready())
        return _supervise([sys.executable, "-m", "honcho", "start", "-d", str(ROOT), "-f", str(procfile)], env)
    except KeyboardInterrupt:  # during the build
        return 130
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
