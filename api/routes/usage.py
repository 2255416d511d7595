"""GET /api/v1/usage: one API key's limits (API_KEY_LIMITS), what it uses of them now, and whether
its pending work waits on one, as the claim sees it (the limits it reads are the ones the consumers
wrote to Redis at their start).

A submit key reads its own; an admin key its own or, with `?key=<id>`, any configured key's. While
the API runs without keys every task belongs to the one owner "" (the anonymous caller), so
`?key=` names nothing and is refused (422) rather than silently ignored.
"""

from __future__ import annotations

import logging
import math
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from api.auth import KeyRing, Principal, SubmitDep
from api.deps import KeyRingDep, StoreDep
from api.errors import ApiError
from api.routes import errors_doc
from api.schemas import KeyUsage, UsageLimits
from core.store import OwnerUsage

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/usage", tags=["usage"])

_EPOCH = date(1970, 1, 1)

KeyQuery = Annotated[
    str | None,
    # A key id is at most 64 characters (api/auth.py): a longer one cannot name a key.
    Query(max_length=64, description="Another key's id (admin keys only); the calling key's own when absent."),
]


def _owner(request: Request, principal: Principal, ring: KeyRing, key: str | None) -> str:
    """Whose usage is asked: the caller's own, or (admin) the configured key `key`. A submit key
    asking for another key is refused before the id is looked up, so ids cannot be probed."""
    if not key or key == principal.owner:
        return principal.owner
    if ring.open:
        raise ApiError(422, "no_api_keys", "no API keys are configured, so there is no key to name; leave out `key`")
    if not principal.sees_all:
        log.warning("key %s refused on %s %s: admin scope needed", principal.id, request.method, request.url.path)
        raise ApiError(403, "forbidden", "a submit key reads only its own usage; an admin key is needed for `key`")
    if not any(k.id == key for k in ring.keys):
        raise ApiError(404, "key_not_found", f"no API key {key!r} is configured")
    return key


def _waiting(held_until: float | None) -> Literal["concurrency", "daily_tokens"] | None:
    """Why a held owner waits: held until one of its tasks ends (inf) or until a time (the next
    UTC day, when its token budget starts again)."""
    if held_until is None:
        return None
    return "concurrency" if math.isinf(held_until) else "daily_tokens"


def usage_body(usage: OwnerUsage) -> KeyUsage:
    """The store's figures as the API shows them: the day as a date, the hold as its reason."""
    held = usage.held_until
    return KeyUsage(
        key=usage.owner,
        day=(_EPOCH + timedelta(days=usage.day)).isoformat(),
        limits=UsageLimits(concurrency=usage.concurrency, daily_tokens=usage.daily_tokens),
        active=usage.active,
        backlog=usage.backlog,
        tokens_today=usage.tokens_today,
        waiting=_waiting(held),
        resumes_at=int(held) if held is not None and math.isfinite(held) else None,
    )


@router.get("", response_model=KeyUsage, responses=errors_doc(403, 404, 422))
async def key_usage(
    request: Request, store: StoreDep, principal: SubmitDep, ring: KeyRingDep, key: KeyQuery = None
) -> KeyUsage:
    """The calling key's limits (concurrency: its tasks ACTIVE at once; daily tokens: what its
    completed tasks may use per UTC day; null: no limit), its tasks ACTIVE and PENDING now, the
    tokens used today, and whether its pending work is held back by a limit (`waiting`) and until
    when (`resumes_at`, for the daily tokens). An admin key may name another key with `key`: a
    submit key doing so is refused (403), an id not configured is a 404 `key_not_found`, and
    without API keys configured `key` is refused (422 `no_api_keys`)."""
    return usage_body(await store.usage(_owner(request, principal, ring, key)))
