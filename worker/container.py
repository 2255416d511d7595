"""`python -m worker.container`: a worker container's main process. It runs the pair that makes
one worker, the consumer and the Celery worker beside it, as two child processes.

Why one parent: a consumer dispatches only to the Celery queue its own worker reads, so one half
without the other does nothing useful. When either child dies this process stops the other and
exits non-zero, and the container's restart policy brings the pair back together.

Why this stop order: on SIGTERM/SIGINT the consumer is stopped first, so it takes no new work and
waits (up to CONSUMER_SHUTDOWN_GRACE) for its tasks in flight while the worker is still there to
finish them, then hands back the rest; only then does the worker get SIGTERM (Celery's warm
shutdown lets a running attempt end). A child still alive after its stop timeout is killed;
nothing is lost by that, the reaper recovers whatever it held.

`python -m worker.container --check` is the container's health check: it succeeds while a
consumer of this container (WORKER_ID) has a live heartbeat in Redis.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType

from redis.exceptions import RedisError

from core.keys import Keys
from core.logs import setup_logging
from core.redis import sync_client
from core.settings import Settings, get_settings

log = logging.getLogger("asynctaskflow.container")

# The same commands `make run` starts (Procfile); a test holds the two lists equal.
CHILDREN: dict[str, list[str]] = {
    "worker": ["python", "-m", "worker"],
    "consumer": ["python", "-m", "consumer"],
}
STOP_ORDER = ("consumer", "worker")
# Beyond its own grace, time a child gets to exit after SIGTERM before it is killed.
STOP_MARGIN = 15.0


def stop_timeouts(settings: Settings) -> dict[str, float]:
    """How long each child may take to stop: the consumer its drain grace; the worker the rest of
    an LLM call already under way (its results are refused once the consumer handed the task back,
    but a warm shutdown lets it end instead of cutting a connection)."""
    return {
        "consumer": settings.consumer_shutdown_grace + STOP_MARGIN,
        "worker": settings.openrouter_timeout + STOP_MARGIN,
    }


class Supervisor:
    """Starts the children, watches them, and stops them in order."""

    def __init__(self, commands: Mapping[str, Sequence[str]], timeouts: Mapping[str, float], poll: float = 0.2):
        self.commands = commands
        self.timeouts = timeouts
        self.poll = poll
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        """Each child runs in its own session, so a terminal's Ctrl-C reaches only this process,
        which then stops the children in order instead of all at once."""
        for name, command in self.commands.items():
            argv = [sys.executable, *command[1:]] if command[0] == "python" else list(command)
            self.procs[name] = subprocess.Popen(argv, start_new_session=True)
            log.info("started %s (pid %d)", name, self.procs[name].pid)

    def exited(self) -> str | None:
        """Name of a child that has exited, if any."""
        return next((name for name, proc in self.procs.items() if proc.poll() is not None), None)

    def stop(self, name: str) -> int:
        """SIGTERM one child and wait for it; kill it when it overstays its timeout."""
        proc = self.procs[name]
        if proc.poll() is None:
            log.info("stopping %s (pid %d)", name, proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.timeouts.get(name, STOP_MARGIN))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
        return proc.wait()

    def stop_all(self) -> dict[str, int]:
        order = [n for n in STOP_ORDER if n in self.procs] + [n for n in self.procs if n not in STOP_ORDER]
        return {name: self.stop(name) for name in order}

    def run(self, stop: threading.Event) -> int:
        """Run until `stop` is set (0 if both children then exit cleanly) or a child dies (1)."""
        self.start()
        while not stop.wait(self.poll):
            dead = self.exited()
            if dead is not None:
                log.error("%s exited with code %s; stopping the container", dead, self.procs[dead].returncode)
                self.stop_all()
                return 1
        codes = self.stop_all()
        log.info("stopped: %s", ", ".join(f"{n} exit {c}" for n, c in codes.items()))
        return 0 if all(code == 0 for code in codes.values()) else 1


def healthy(settings: Settings) -> bool:
    """True while a consumer of this container (its id starts with WORKER_ID) has a live heartbeat.
    Reads the small consumer registry, never scans the keyspace."""
    keys = Keys(settings.redis_key_prefix)
    client = sync_client(settings)
    try:
        members: set[str] = client.smembers(keys.consumers)  # type: ignore[assignment]
        ours = [c for c in members if c.startswith(f"{settings.worker_id}:")]
        return bool(ours) and any(client.mget([keys.heartbeat(c) for c in ours]))
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.container", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 0 while this container's consumer is alive")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.check:
        try:
            return 0 if healthy(settings) else 1
        except RedisError:
            return 1
    setup_logging(settings.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()  # only the flag: the main loop does the stopping

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return Supervisor(CHILDREN, stop_timeouts(settings)).run(stop)


if __name__ == "__main__":
    sys.exit(main())
