"""Routes under /api/v1/queues. Depths, state counts, the consumers' current ratio, and the dead-letter queue."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CursorDep, LimitDep, SettingsDep, StoreDep
from api.listing import load_page
from api.schemas import ErrorBody, QueueDepths, QueueStatus, TaskPage
from core.policy import retry_share
from core.states import State

router = APIRouter(prefix="/api/v1/queues", tags=["queues"])


@router.get("/status", response_model=QueueStatus, responses={503: {"model": ErrorBody}})
async def queue_status(store: StoreDep, settings: SettingsDep) -> QueueStatus:
    """Depths read from the structures, counts per state, the live consumers, and the retry share
    they use now (the same function of the retry backlog every consumer computes)."""
    depths = await store.depths()
    states = await store.state_counts()
    workers = await store.live_consumers()
    ratio = retry_share(
        settings.retry_ratio, settings.retry_ratio_floor, depths["retry"], settings.retry_pressure_threshold
    )
    return QueueStatus(
        queues=QueueDepths(**depths),
        states={State(name): count for name, count in states.items()},
        retry_ratio=ratio,
        workers=len(workers),
    )


@router.get("/dlq", response_model=TaskPage, responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}})
async def dead_letters(store: StoreDep, limit: LimitDep, cursor: CursorDep) -> TaskPage:
    """Dead tasks, most recently dead first, with the error that killed each."""
    return await load_page(store, State.DLQ, limit, cursor)
