"""Issue 16's measurement: LLM calls per minute while the provider answers every call 429 with no
`Retry-After`, for 4 tasks on the real stack (API, worker, consumer, scheduler) with default
retry settings, against the loopback stand-in.

    .venv/bin/python -m bench.rate_limit_429 [--seconds 60] [--tasks 4] [--env NAME=VALUE ...]

Figures on this 2-core machine (issue 16): before the per-task backoff 120 calls in 60 s (each
task back every 1-2 s, for ever); after it 5-6 (6 and 5 in two runs), of which the per-task
backoff alone (`--env LLM_RATE_LIMIT_REQUESTS=100000`, fleet pacing out of the way) gives 8.

Run from another checkout's root (`PYTHONPATH` there) to measure that code: the stack's
processes run the code of the tree this file is in.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

from tests.stub_llm import StubLLM
from utils import redis_server

# The integration tests' stack of real processes, imported by name: `make lint` type-checks bench/
# but not tests/, and a static import would pull tests/integration/stack.py into it.
_stack = importlib.import_module("tests.integration.stack")
Stack, wait_until = _stack.Stack, _stack.wait_until

# The stack's test timings are short; the measurement asks for the retry defaults back.
DEFAULTS = {"RETRY_BACKOFF_BASE": "2", "RETRY_BACKOFF_MAX": "300", "MAX_RETRIES": "3"}


def measure(seconds: float, tasks: int, env: dict[str, str] | None = None) -> dict[str, object]:
    """Calls the stand-in received in `seconds` from the first call, and each task's state;
    `env` overrides settings of the stack (e.g. LLM_RATE_LIMIT_REQUESTS)."""
    with tempfile.TemporaryDirectory() as tmp, StubLLM() as stub:
        port = redis_server.free_port()
        redis = redis_server.start(port, Path(tmp) / "redis")
        stack = Stack(f"redis://127.0.0.1:{port}/2", stub.url, Path(tmp), **{**DEFAULTS, **(env or {})})
        try:
            stub.state.set_fault(429)  # every call: 429 without Retry-After
            stack.start_all()
            ids = [stack.submit(f"rate limited {n}") for n in range(tasks)]
            first = wait_until(lambda: stub.calls(), 60, what="the first call")[0]["at"]
            time.sleep(max(0.0, first + seconds - time.time()))
            calls = [c for c in stub.calls() if c["at"] < first + seconds]
            tasks_now = [stack.store.get(i) for i in ids]
            return {
                "calls": len(calls),
                "per_minute": round(len(calls) * 60 / seconds, 1),
                "states": sorted({f"{t.state.value}/{t.error_type}" for t in tasks_now}),
                "retry_counts": sorted(t.retry_count for t in tasks_now),
            }
        finally:
            stack.stop()
            redis.terminate()
            redis.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting of the stack")
    args = parser.parse_args()
    print(measure(args.seconds, args.tasks, dict(item.split("=", 1) for item in args.env)))


if __name__ == "__main__":
    main()
