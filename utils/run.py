"""`make run`: the whole stack in one terminal (api, Celery worker, consumer, scheduler) under
honcho, on an embedded Redis when REDIS_URL is unreachable. Ctrl-C stops all of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from core.settings import get_settings
from utils import redis_server

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


def main() -> int:
    settings = get_settings()
    redis_proc = _embedded_redis(settings.redis_url)
    provider = "offline extractive summarizer (no OPENROUTER_API_KEY)" if settings.llm_uses_offline else "OpenRouter"
    print(f"LLM provider: {provider}; API on http://{settings.api_host}:{settings.api_port}")
    # Children run the same interpreter as this script (the project's virtualenv).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}
    try:
        honcho = [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile")]
        return subprocess.call(honcho, cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
