"""Bare Celery `.delay()` from a script (no HTTP), the lowest baseline; run by the harness with
the same environment as the baseline worker. Prints one JSON line.

    python -m bench.bare_delay drain 5000     # N sequential .delay(); {"seconds": ...}
    python -m bench.bare_delay pickup 100     # one .delay() at a time after a random idle gap;
                                              # {"sent": {text-id: time.time()}}
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid

from bench.baseline_app import DONE, _redis, summarize
from bench.load import content


def drain(count: int) -> dict[str, float]:
    started = time.perf_counter()
    for _ in range(count):
        summarize.delay(str(uuid.uuid4()), content())
    return {"seconds": time.perf_counter() - started}


def pickup(count: int) -> dict[str, dict[str, float]]:
    """Like the harness's pick-up loop: an idle gap, one task, wait until it is done."""
    sent: dict[str, float] = {}
    r = _redis()
    for _ in range(count):
        time.sleep(random.uniform(0.02, 0.1))
        base = int(r.get(DONE) or 0)  # type: ignore[arg-type]
        text = content()
        sent[text.split()[2].rstrip(".")] = time.time()
        summarize.delay(str(uuid.uuid4()), text)
        deadline = time.monotonic() + 10
        while int(r.get(DONE) or 0) <= base and time.monotonic() < deadline:  # type: ignore[arg-type]
            time.sleep(0.001)
    return {"sent": sent}


if __name__ == "__main__":
    mode, n = sys.argv[1], int(sys.argv[2])
    print(json.dumps(drain(n) if mode == "drain" else pickup(n)))
