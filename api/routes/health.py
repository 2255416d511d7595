"""The health check, for load balancers and `docker compose` health checks."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from api.deps import StoreDep
from api.errors import REDIS_DOWN
from api.schemas import Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(store: StoreDep, response: Response) -> Health:
    """200 when Redis answers, with the number of live consumers; 503 when it does not. Without
    Redis the API can serve nothing, so a balancer should route around it."""
    try:
        await store.ping()
        workers = len(await store.live_consumers())
    except REDIS_DOWN as exc:
        log.warning("health check: redis unreachable: %s", exc)
        response.status_code = 503
        return Health(status="unavailable", redis="unreachable", workers=None)
    return Health(status="ok", redis="ok", workers=workers)
