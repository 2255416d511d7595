"""Health and the workers. Probes for load balancers and orchestrators (/live, /ready), the
system check (/health), the consumer/worker pairs, diagnostics, and the shared breaker's controls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Response

from api.auth import OPEN_WARNING, Admin, Public
from api.breaker import BreakerControl
from api.deps import BreakerDep, KeyRingDep, SettingsDep, StoreDep
from api.errors import REDIS_DOWN, redact_url, scrub
from api.routes.openrouter import clear_pause, provider_pause, rate_limited
from api.schemas import Breaker, Diagnostics, ErrorBody, Health, Probe, WorkerInfo, Workers
from core.redis import celery_transport_options
from core.settings import Settings
from core.store import AsyncTaskStore

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

T = TypeVar("T")


async def _in_thread(func: Callable[..., T], *args: Any) -> T:
    """pybreaker and Celery's inspect are synchronous; a thread keeps them off the event loop."""
    return await anyio.to_thread.run_sync(func, *args)


@router.get("/live", response_model=Probe, dependencies=[Public])
async def live() -> Probe:
    """Liveness: 200 while the process serves requests; it checks nothing else, so an outage of
    Redis never gets the API restarted."""
    return Probe(status="ok")


@router.get("/ready", response_model=Probe, responses={503: {"model": Probe}}, dependencies=[Public])
async def ready(store: StoreDep, response: Response) -> Probe:
    """Readiness: 200 when Redis answers, 503 when it does not (route traffic elsewhere)."""
    try:
        await store.ping()
    except REDIS_DOWN as exc:
        log.warning("readiness: redis unreachable: %s", exc)
        response.status_code = 503
        return Probe(status="unavailable")
    return Probe(status="ok")


def _problems(workers: int, scheduler: dict[str, Any] | None, breaker: str) -> list[str]:
    problems = []
    if workers == 0:
        problems.append("no live worker, so tasks wait in the queue")
    if scheduler is None:
        problems.append("no scheduler: retries are not promoted and orphans are not reaped")
    if breaker == "open":
        problems.append("circuit breaker open: LLM calls are paused")
    return problems


@router.get(
    "/health",
    response_model=Health,
    responses={
        503: {
            "model": Health,
            "description": "Something is wrong; `problems` says what.",
            "content": {"application/json": {"example": {
                "status": "unhealthy", "redis": "ok", "workers": 0, "scheduler": "ok", "breaker": "closed",
                "problems": ["no live worker, so tasks wait in the queue"],
            }}},
        }
    },
    dependencies=[Public],
)  # fmt: skip
async def health(
    store: StoreDep, breaker: BreakerDep, settings: SettingsDep, keyring: KeyRingDep, response: Response
) -> Health:
    """200 when Redis answers, at least one worker and a scheduler are alive and the breaker is not
    open; otherwise 503 with what is wrong in `problems`. `auth` says whether API keys are
    required; `warnings` names what is unsafe without being broken (an open API)."""
    security = {
        "auth": "open" if keyring.open else "api_keys",
        "warnings": [OPEN_WARNING] if keyring.open else [],
        "redis_url": redact_url(settings.redis_url),
    }
    try:
        await store.ping()
        workers = len(await store.live_consumers())
        scheduler = await store.scheduler_info()
        state = str((await _in_thread(breaker.status))["state"])
        paused = await provider_pause(store) if state == "open" else []
        slowed = await rate_limited(store)
    except REDIS_DOWN as exc:
        log.warning("health check: redis unreachable: %s", exc)
        response.status_code = 503
        problems = ["redis unreachable: nothing can be stored or read"]
        return Health(status="unhealthy", redis="unreachable", workers=None, scheduler=None, breaker=None,
                      problems=problems, **security)  # fmt: skip
    problems = _problems(workers, scheduler, state) + paused
    if problems:
        response.status_code = 503
    security["warnings"] = [*security["warnings"], *slowed]
    return Health(
        status="unhealthy" if problems else "degraded" if slowed else "ok",
        redis="ok",
        workers=workers,
        scheduler="ok" if scheduler else "missing",
        breaker=state,  # type: ignore[arg-type]
        problems=problems,
        **security,
    )


def _worker(beat: dict[str, Any], stats: dict[str, Any]) -> WorkerInfo:
    return WorkerInfo(
        consumer_id=beat["id"],
        worker_id=beat.get("worker_id"),
        host=beat.get("host"),
        pid=beat.get("pid"),
        concurrency=beat.get("concurrency"),
        inflight=beat.get("inflight"),
        retry_ratio=beat.get("retry_ratio"),
        breaker=beat.get("breaker"),
        started_at=beat.get("started_at"),
        last_heartbeat=beat.get("beat_at"),
        **stats,
    )


@router.get("/health/workers", response_model=Workers, responses={503: {"model": ErrorBody}}, dependencies=[Admin])
async def workers(store: StoreDep, breaker: BreakerDep) -> Workers:
    """Every live consumer/worker pair: host, pid, concurrency, tasks in flight, last heartbeat,
    attempts processed and failed (counted by the report scripts), retry ratio, breaker as seen."""
    beats = await store.live_consumers()
    stats = await store.consumer_stats([b["id"] for b in beats])
    status = await _in_thread(breaker.status)
    return Workers(workers=[_worker(b, stats[b["id"]]) for b in beats], breaker=Breaker.model_validate(status))


def _summarize(replies: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """For each Celery worker, its pid, pool, tasks run, and the ids (not the attempt tokens) active and reserved."""
    workers: dict[str, Any] = {}
    for kind in ("stats", "active", "reserved"):
        for name, reply in (replies.get(kind) or {}).items():
            entry = workers.setdefault(name, {})
            if kind == "stats":
                entry |= {"pid": reply.get("pid"), "pool": reply.get("pool"), "total": reply.get("total")}
                entry["uptime"] = reply.get("uptime")
            else:
                ids = [t.get("args", [None])[0] for t in reply]
                entry |= {kind: len(reply), f"{kind}_task_ids": ids}
    return {"workers": workers, "answered": len(workers)}


def _inspect(settings: Settings, expected: int) -> dict[str, dict[str, Any] | None]:
    """`celery inspect` stats, active and reserved, one broadcast after the other through one
    app (Celery's apps are not built to be set up in several threads at once). Each returns once
    the `expected` workers (one per live consumer) answered, or after DIAGNOSTICS_TIMEOUT."""
    from celery import Celery  # only this route needs Celery: the API process never loads it otherwise

    app = Celery("asynctaskflow-inspect", broker=settings.broker_url, set_as_current=False)
    app.conf.broker_connection_retry = False
    app.conf.broker_transport_options = celery_transport_options(settings)
    app.conf.broker_connection_timeout = settings.diagnostics_timeout
    try:
        inspect = app.control.inspect(timeout=settings.diagnostics_timeout, limit=expected or None)
        return {kind: getattr(inspect, kind)() for kind in ("stats", "active", "reserved")}
    finally:
        app.close()


async def _celery(settings: Settings, expected: int) -> dict[str, Any]:
    try:
        with anyio.fail_after(settings.diagnostics_timeout * 3 + 2):
            # Abandoned on timeout: a broker that hangs must not hold the request (the thread ends on its own).
            replies = await anyio.to_thread.run_sync(_inspect, settings, expected, abandon_on_cancel=True)
    except Exception as exc:  # the broker is away or slow: say so, the rest of the page still answers
        # The broker's error text may quote its URL, password included.
        detail = scrub(f"{type(exc).__name__}: {exc}", [settings.redis_url, settings.broker_url])
        log.warning("celery inspect failed: %s", detail)
        return {"error": f"celery inspect failed: {detail}", "workers": {}, "answered": 0}
    return _summarize(replies)


@router.get(
    "/health/workers/diagnostics",
    response_model=Diagnostics,
    responses={503: {"model": ErrorBody}},
    dependencies=[Admin],
)
async def diagnostics(store: StoreDep, settings: SettingsDep) -> Diagnostics:
    """What the Celery workers answer to `inspect` (stats, active, reserved) within
    DIAGNOSTICS_TIMEOUT, and Redis's version, memory and clients (and its URL, password redacted)."""
    redis_info = {**await store.server_info(), "url": redact_url(settings.redis_url)}
    expected = len(await store.live_consumers())
    return Diagnostics(celery=await _celery(settings, expected), redis=redis_info)


@router.get(
    "/health/workers/circuit-breaker",
    response_model=Breaker,
    responses={503: {"model": ErrorBody}},
    dependencies=[Admin],
)
async def breaker_state(breaker: BreakerDep, store: StoreDep) -> Breaker:
    """The shared breaker, with its state, failures counted, seconds until a probe while open."""
    await store.ping()  # pybreaker falls back to "closed" on a Redis error; an outage must be a 503
    return Breaker.model_validate(await _in_thread(breaker.status))


async def _operate(breaker: BreakerControl, store: AsyncTaskStore, action: Callable[[], None], done: str) -> Breaker:
    """An operator's change to the shared breaker, then its state. Redis is pinged first: pybreaker
    swallows Redis errors on writes, and an outage must be a 503, not a fake success."""
    await store.ping()
    await _in_thread(action)
    log.warning("circuit breaker %s by an operator", done)
    return Breaker.model_validate(await _in_thread(breaker.status))


@router.post(
    "/health/workers/reset-circuit-breaker",
    response_model=Breaker,
    responses={503: {"model": ErrorBody}},
    dependencies=[Admin],
)
async def reset_breaker(breaker: BreakerDep, store: StoreDep) -> Breaker:
    """Close the shared breaker, so every consumer takes work again at once (they read it from Redis);
    a pause (refused key, spent credits, the input-rejected guard) ends with it."""
    state = await _operate(breaker, store, breaker.close, "reset")
    await clear_pause(store)
    return state


@router.post(
    "/health/workers/open-circuit-breaker",
    response_model=Breaker,
    responses={503: {"model": ErrorBody}},
    dependencies=[Admin],
)
async def open_breaker(breaker: BreakerDep, store: StoreDep) -> Breaker:
    """Open the shared breaker, so every consumer stops taking work (tasks wait in the queue, spending
    no retries) until it is reset, or CIRCUIT_BREAKER_RESET_TIMEOUT lets a probe through."""
    return await _operate(breaker, store, breaker.open, "opened")
