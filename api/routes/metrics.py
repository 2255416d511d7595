"""GET /metrics: Prometheus text format, computed from Redis at each scrape."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import Admin
from api.deps import BreakerDep, SettingsDep, StoreDep, TypeNamesDep
from api.metrics import Snapshot, render
from api.schemas import ErrorBody
from core.policy import retry_share

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                CONTENT_TYPE_LATEST: {
                    "example": 'atf_queue_depth{priority="5",queue="primary"} 3.0\n'
                    'atf_queue_depth{priority="",queue="dlq"} 1.0\n'
                }
            }
        },
        503: {"model": ErrorBody},
    },
    # Queue depths and counters describe everyone's work: an admin key (Prometheus: `authorization`).
    dependencies=[Admin],
)
async def metrics(store: StoreDep, settings: SettingsDep, breaker: BreakerDep, type_names: TypeNamesDep) -> Response:
    """Queue depths (the pending lists per priority level), tasks per state, transition counters
    (completed, failed, retried, dead, …), the same counters per task type and the tasks stored per
    type, the run-time histogram, the breaker's state, live workers and scheduler. Every figure is
    read from Redis now, from structures and counters the transition scripts keep; nothing is
    scanned."""
    depths = await store.depths()
    by_type = await store.type_counters()
    s = settings
    snapshot = Snapshot(
        depths=depths,
        states=await store.state_counts(),
        totals=await store.counters(),
        durations=await store.durations(),
        breaker=str((await anyio.to_thread.run_sync(breaker.status))["state"]),
        workers=len(await store.live_consumers()),
        scheduler_alive=await store.scheduler_info() is not None,
        retry_ratio=retry_share(s.retry_ratio, s.retry_ratio_floor, depths["retry"], s.retry_pressure_threshold),
        type_counters=by_type,
        type_sizes=await store.type_sizes(sorted({*type_names, *by_type})),
        priorities=await store.priority_depths(),
    )
    return Response(render(snapshot), media_type=CONTENT_TYPE_LATEST)
