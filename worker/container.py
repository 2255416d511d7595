"""`python -m worker.container`: a worker container's main process. It is the container's
consumer, and it runs the Celery worker beside it as its one child process.

Why together: a consumer dispatches only to the Celery queue its own worker reads, so one half
without the other does nothing useful. When the worker dies, the consumer hands back its tasks
(Consumer.worker_lost: those that may have reached the LLM spend a retry, the waiting ones do
not) and this process exits non-zero; when this process dies, the kernel stops the worker
(PR_SET_PDEATHSIG). Either way the container's restart policy brings the pair back together.

Why not a separate supervisor process: a third interpreter that only waits cost 41 MB of the
container's 183 MB (bench/RESULTS.md, issue 9's target is under 150 MB).

Why this stop order: on SIGTERM/SIGINT the consumer takes no new work and waits (up to
CONSUMER_SHUTDOWN_GRACE) for its tasks in flight while the worker is still there to finish
them, then hands back the rest; only then does the worker get SIGTERM (Celery's warm shutdown
lets a running attempt end). A worker still alive after its stop timeout is killed; nothing is
lost by that, the reaper recovers whatever it held.

`python -m worker.container --check` is the container's health check: it succeeds while a
consumer of this container (WORKER_ID) has a live heartbeat in Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

from consumer.__main__ import serve
from consumer.service import stop_on_signals
from core.errors import RedisError
from core.keys import deployment_keys
from core.logs import setup_logging
from core.redis import sync_client
from core.settings import Settings, get_settings
from core.store import TaskStore

log = logging.getLogger("asynctaskflow.container")

# The command `make run` starts for the worker (Procfile); a test holds the two equal.
WORKER_COMMAND = ["python", "-m", "worker"]
# Beyond an LLM call already under way, time the worker gets to exit after SIGTERM.
STOP_MARGIN = 15.0
_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies, so no worker outlives its consumer."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the container's end stops it instead
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerChild:
    """The Celery worker process: started, watched, stopped."""

    def __init__(self, command: Sequence[str], stop_timeout: float) -> None:
        self.argv = [sys.executable, *command[1:]] if command[0] == "python" else list(command)
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.died = threading.Event()  # exited before we stopped it

    def start(self) -> None:
        """In its own session, so a terminal's Ctrl-C reaches only this process, which stops the
        worker after the consumer instead of both at once."""
        self.proc = subprocess.Popen(self.argv, start_new_session=True, preexec_fn=_stop_with_parent)
        log.info("started worker (pid %d)", self.proc.pid)

    def watch(self, stop: threading.Event, poll: float = 0.2) -> threading.Thread:
        """A thread that sets `died` and `stop` if the worker exits while the consumer runs."""

        def loop() -> None:
            assert self.proc is not None
            while not stop.wait(poll):
                if self.proc.poll() is not None:
                    log.error("worker exited with code %s; stopping the container", self.proc.returncode)
                    self.died.set()
                    stop.set()

        thread = threading.Thread(target=loop, name="watch-worker", daemon=True)
        thread.start()
        return thread

    def stop(self) -> int:
        """SIGTERM and wait; kill it when it overstays its timeout."""
        assert self.proc is not None
        if self.proc.poll() is None:
            log.info("stopping worker (pid %d)", self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop in time; killing it")
                self.proc.kill()
        return self.proc.wait()


def run(settings: Settings, command: Sequence[str] = WORKER_COMMAND) -> int:
    """The consumer until SIGTERM/SIGINT or the worker's death, then the worker stopped; 0 when
    both ended cleanly."""
    worker = WorkerChild(command, settings.openrouter_timeout + STOP_MARGIN)
    stop = threading.Event()
    stop_on_signals(stop)
    worker.start()
    worker.watch(stop)
    try:
        # A dead worker finishes nothing: its consumer hands its tasks back at once.
        serve(settings, stop, worker_died=worker.died.is_set)
    finally:
        code = worker.stop()
    log.info("stopped: worker exit %s", code)
    # -SIGTERM: our stop reached the worker before Celery had set up its handler (it was still
    # starting, so it held no task): a clean stop all the same.
    return 1 if worker.died.is_set() or code not in (0, -signal.SIGTERM) else 0


def healthy(settings: Settings) -> bool:
    """True while a consumer of this container (its id starts with WORKER_ID) has a live heartbeat.
    Reads the small consumer registry, never scans the keyspace."""
    client = sync_client(settings)
    try:
        return TaskStore(client, deployment_keys(settings)).consumer_alive(f"{settings.worker_id}:")
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
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
