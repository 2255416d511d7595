"""Process shells for the consumer and the scheduler: signals, reconnects, the heartbeat thread.
Each loop's real work is one `run_once`/`*_once` call; these only repeat it."""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable

from core.errors import RedisError

log = logging.getLogger("asynctaskflow.service")


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT only set the stop flag; the loops finish their step and exit."""

    def handler(signum: int, _frame: object) -> None:
        log.info("received signal %s; stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def repeat(step: Callable[[], object], stop: threading.Event, pause: float = 0.0, once: bool = False) -> None:
    """Call `step` until `stop` is set (or, with `once`, until it succeeded). While Redis is away,
    wait with growing backoff (up to 5 s) and try again: a Redis restart is a pause, never a
    crash that needs a restart."""
    backoff = 0.1
    while not stop.is_set():
        try:
            step()
            backoff = 0.1
        except RedisError as e:
            log.warning("Redis unavailable (%s); retrying in %.1fs", type(e).__name__, backoff)
        except Exception:  # a loop must outlive any one failure; the task it touched is recoverable
            log.exception("step failed; retrying in %.1fs", backoff)
        else:
            if once:
                return
            if pause:
                stop.wait(pause * random.uniform(0.8, 1.2))  # jittered, so replicas do not poll in lockstep
            continue
        stop.wait(backoff)
        backoff = min(backoff * 2, 5.0)


def every(interval: float, step: Callable[[], object], stop: threading.Event, name: str) -> threading.Thread:
    """Run `step` every `interval` seconds in a daemon thread until `stop` is set."""

    def loop() -> None:
        while not stop.wait(interval):
            try:
                step()
            except RedisError as e:
                log.warning("%s: Redis unavailable (%s)", name, type(e).__name__)
            except Exception:
                log.exception("%s failed", name)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
