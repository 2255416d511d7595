"""The LLM provider as operators see it: its key, credits and limits (asked of the provider at
most every OPENROUTER_STATUS_CACHE_SECONDS), the fleet's rate limit, the breaker and the pause,
and per-day call metrics written by the workers."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, Query

from api.auth import Admin
from api.deps import BreakerDep, SettingsDep, StoreDep
from api.schemas import (
    Breaker,
    ErrorBody,
    ProviderAccount,
    ProviderDay,
    ProviderMetrics,
    ProviderRateLimit,
    ProviderStatus,
)
from core.provider_state import METRICS_DAYS
from core.settings import Settings
from core.store import AsyncTaskStore

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/openrouter", tags=["llm provider"])

KEY_TIMEOUT = 5.0  # seconds the status page waits for the provider's key endpoint
# Statuses with which a server says it has no key endpoint at all (OpenAI, vLLM, Ollama, LiteLLM:
# `/key` is OpenRouter's own).
NO_KEY_ENDPOINT = frozenset({404, 405, 501})
NOT_AVAILABLE = "not available for this provider (its server has no /key endpoint)"
RATE_LIMITED_WINDOW_MS = 60_000  # /health says "degraded: rate limited" this long after a 429
MAX_DAYS = METRICS_DAYS  # the workers keep per-day metrics this long
_FIGURES = ("calls", "ok", "errors", "prompt_tokens", "completion_tokens", "total_tokens")


def _scrub(text: str, settings: Settings) -> str:
    key = settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else ""
    return text.replace(key, "***") if key else text


async def _ask_provider(settings: Settings, now_ms: int) -> ProviderAccount:
    """OpenRouter's `GET {base}/key`: whether the key is valid, its credits and limits. Another
    OpenAI-compatible server may have no such endpoint; then validity stays unknown."""
    if settings.llm_uses_offline:
        return ProviderAccount(checked_at=now_ms, key_valid=None, error="offline provider: no account to check")
    key = settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = settings.openrouter_base_url.rstrip("/") + "/key"
    try:
        async with httpx.AsyncClient(timeout=min(KEY_TIMEOUT, settings.openrouter_timeout)) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as e:
        return ProviderAccount(checked_at=now_ms, key_valid=None, error=_scrub(f"{type(e).__name__}: {e}", settings))
    return _account(response, now_ms, settings)


def _account(response: httpx.Response, now_ms: int, settings: Settings) -> ProviderAccount:
    """The key endpoint's answer: 200 with `data`, 401 (bad key), 402 (no credits), or anything else."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    if response.status_code in NO_KEY_ENDPOINT:
        return ProviderAccount(checked_at=now_ms, key_valid=None, note=NOT_AVAILABLE)
    if response.status_code == 200 and isinstance(data, dict):
        fields = ("label", "usage", "limit", "limit_remaining", "is_free_tier", "rate_limit")
        return ProviderAccount(checked_at=now_ms, key_valid=True, **{f: data.get(f) for f in fields})
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else response.text[:200]
    text = _scrub(f"HTTP {response.status_code}: {message}", settings)
    valid = {401: False, 403: False, 402: True}.get(response.status_code)
    return ProviderAccount(checked_at=now_ms, key_valid=valid, error=text)


async def _account_cached(store: AsyncTaskStore, settings: Settings, refresh: bool) -> tuple[ProviderAccount, bool]:
    cached = None if refresh else await store.provider.cached_account()
    if cached:
        return ProviderAccount.model_validate_json(cached), True
    account = await _ask_provider(settings, await store.now_ms())
    await store.provider.cache_account(account.model_dump_json(), int(settings.openrouter_status_cache_seconds * 1000))
    return account, False


def _rate_limit(settings: Settings, bucket: dict[str, str]) -> ProviderRateLimit:
    return ProviderRateLimit(
        enabled=settings.llm_rate_limit_requests > 0 and not settings.llm_uses_offline,
        requests=settings.llm_rate_limit_requests,
        interval_seconds=settings.llm_rate_limit_interval,
        pace=float(bucket.get("factor") or 1.0),
        tokens=float(bucket["tokens"]) if "tokens" in bucket else None,
    )


def _int(value: str | None) -> int | None:
    return int(value) if value else None


@router.get("/status", response_model=ProviderStatus, responses={503: {"model": ErrorBody}}, dependencies=[Admin])
async def status(
    store: StoreDep,
    settings: SettingsDep,
    breaker: BreakerDep,
    refresh: Annotated[bool, Query(description="Ask the provider now instead of using the cache.")] = False,
) -> ProviderStatus:
    """Which provider and model answer, whether the key is valid and its credits (from the
    provider, cached briefly in Redis), the fleet's rate limit and its pace, the shared breaker,
    the pause after a 401/402, and the last error and success the workers saw."""
    account, cached = await _account_cached(store, settings, refresh)
    state = await store.provider.state()
    bucket = await store.provider.bucket()
    shared = Breaker.model_validate(await anyio.to_thread.run_sync(breaker.status))
    paused_until = _int(state.get("paused_until"))
    paused = shared.state == "open" and paused_until is not None and paused_until > await store.now_ms()
    offline = settings.llm_uses_offline
    return ProviderStatus(
        provider="offline" if offline else "openrouter",
        base_url=None if offline else settings.openrouter_base_url,
        model="extractive" if offline else settings.openrouter_model,
        fallback_models=[] if offline else settings.fallback_models,
        key_configured=bool(settings.openrouter_api_key and settings.openrouter_api_key.get_secret_value()),
        account=account,
        cached=cached,
        rate_limit=_rate_limit(settings, bucket),
        breaker=shared,
        # An ended pause (its time passed, or an operator's reset) is not shown beside `paused: false`.
        paused=paused,
        paused_until=paused_until if paused else None,
        pause_reason=state.get("pause_reason") if paused else None,
        last_error=state.get("last_error"),
        last_error_type=state.get("last_error_type"),
        last_error_model=state.get("last_error_model"),
        last_error_at=_int(state.get("last_error_at")),
        last_success_at=_int(state.get("last_success_at")),
        last_model=state.get("last_model"),
    )


def _day(day: str, raw: dict[str, str]) -> ProviderDay:
    def prefixed(prefix: str) -> dict[str, int]:
        return {k.removeprefix(prefix): int(v) for k, v in raw.items() if k.startswith(prefix)}

    figures = {name: int(raw.get(name, 0)) for name in _FIGURES}
    return ProviderDay(day=day, errors_by_class=prefixed("error:"), models=prefixed("model:"), **figures)


def _total(days: list[ProviderDay]) -> ProviderDay:
    sums: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    models: Counter[str] = Counter()
    for day in days:
        sums.update({name: getattr(day, name) for name in _FIGURES})
        errors.update(day.errors_by_class)
        models.update(day.models)
    return ProviderDay(day="total", errors_by_class=dict(errors), models=dict(models), **{n: sums[n] for n in _FIGURES})


@router.get("/metrics", response_model=ProviderMetrics, responses={503: {"model": ErrorBody}}, dependencies=[Admin])
async def metrics(
    store: StoreDep,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="How many days back, today included (UTC).")] = 7,
) -> ProviderMetrics:
    """LLM calls per UTC day, oldest first: calls, successes, errors by class, calls per model and
    tokens, from counters the workers keep per day (one hash per day, nothing scanned)."""
    today = datetime.fromtimestamp(await store.now_ms() // 1000, UTC).date()
    names = [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    rows = [_day(name, raw) for name, raw in zip(names, await store.provider.days(names), strict=True)]
    return ProviderMetrics(days=rows, total=_total(rows))


async def provider_pause(store: AsyncTaskStore) -> list[str]:
    """For `/health` while the breaker is open: the pause a refused key, spent credits or the
    input-rejected guard put on LLM calls, if that is why, with its reason and end (else nothing:
    the breaker's own problem line says enough)."""
    state = await store.provider.state()
    until, reason = state.get("paused_until"), state.get("pause_reason")
    if not until or int(until) <= await store.now_ms():
        return []
    end = datetime.fromtimestamp(int(until) / 1000, UTC).isoformat(timespec="seconds")
    fix = "fix the configuration" if str(reason).startswith("INPUT_REJECTED_GUARD") else "fix the key or the credits"
    return [f"LLM provider paused until {end} ({fix}, then reset the breaker): {reason}"]


async def clear_pause(store: AsyncTaskStore) -> None:
    """An operator's reset of the breaker ends the pause: its fields go with it, so the status
    never shows an old `paused_until`/`pause_reason` beside `paused: false`."""
    await store.provider.clear_pause()


async def rate_limited(store: AsyncTaskStore) -> list[str]:
    """For `/health`: "degraded: rate limited" while the provider's 429s persist (the last one
    less than a minute ago), with the fleet's pace; else nothing."""
    last = (await store.provider.state()).get("last_rate_limited_at")
    ago_ms = await store.now_ms() - int(last or 0)
    if not last or ago_ms > RATE_LIMITED_WINDOW_MS:
        return []
    factor = (await store.provider.bucket()).get("factor")
    pace = f"; the fleet's pace is {float(factor):.0%} of its rate" if factor else ""
    return [f"degraded: rate limited (the provider's last 429 was {ago_ms / 1000:.0f}s ago{pace})"]
