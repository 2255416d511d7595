"""The LLM provider's state in Redis, as the workers write it and the API reads it: per-day call
metrics, the last error and success, the pause after a refused key or spent credits, the cached
account status. It lives on the control shard (a store's own client and keys there).

Plain reads and writes, no script: each is a figure or a note, never a task's state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from core.keys import Keys

METRICS_DAYS = 90  # per-day metrics are kept this long
BUCKET = "llm"  # the fleet's shared token bucket of LLM calls (worker/ratelimit.py)
PAUSE_FIELDS = ("paused_until", "pause_reason")  # what an operator's reset of the breaker clears


def day_of(epoch_seconds: float) -> str:
    """The UTC day (YYYY-MM-DD) that per-day metrics file a moment under."""
    return time.strftime("%Y-%m-%d", time.gmtime(epoch_seconds))


class ProviderState:
    """The workers' side (sync)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    def record(self, counts: Mapping[tuple[str, str], int], state: Mapping[str, str | int]) -> None:
        """Add the per-day counts ((day, field) → calls) and note the last error's and success's
        fields, in one MULTI. A success ends any run of identical input refusals
        (INPUT_REJECTED_GUARD). Raises RedisError: the caller keeps what was not written."""
        pipe = self.r.pipeline(transaction=True)
        for (day, field), count in counts.items():
            pipe.hincrby(self.keys.llm_daily(day), field, count)
        for day in {day for day, _ in counts}:
            pipe.expire(self.keys.llm_daily(day), METRICS_DAYS * 86400)
        if state:
            pipe.hset(self.keys.llm_state, mapping=dict(state))
        if "last_success_at" in state:
            pipe.delete(self.keys.llm_rejections, self.keys.llm_rejected_ids)
        pipe.execute()

    def note_pause(self, until_ms: int, reason: str) -> None:
        """Why and until when LLM calls are paused, for `/health` and the provider status."""
        self.r.hset(self.keys.llm_state, mapping={"paused_until": until_ms, "pause_reason": reason[:500]})


class AsyncProviderState:
    """The API's side (asyncio)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    async def state(self) -> dict[str, str]:
        """The last error and success the workers saw, and the pause (fields of llm_state)."""
        return dict(await self.r.hgetall(self.keys.llm_state))

    async def days(self, days: list[str]) -> list[dict[str, str]]:
        """Each day's metrics (YYYY-MM-DD, UTC), in the order asked; {} for a day without calls."""
        pipe = self.r.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self.keys.llm_daily(day))
        return [dict(raw) for raw in await pipe.execute()] if days else []

    async def bucket(self) -> dict[str, str]:
        """The fleet's LLM call bucket: its pace `factor` and its `tokens` (none while unused)."""
        return dict(await self.r.hgetall(self.keys.rate_bucket(BUCKET)))

    async def cached_account(self) -> str | None:
        """The provider's account status (JSON) as last asked, while its cache lasts."""
        cached: str | None = await self.r.get(self.keys.llm_status_cache)
        return cached

    async def cache_account(self, account: str, ttl_ms: int) -> None:
        await self.r.set(self.keys.llm_status_cache, account, px=ttl_ms)

    async def clear_pause(self) -> None:
        """An operator's reset of the breaker ends the pause: its fields go with it."""
        await self.r.hdel(self.keys.llm_state, *PAUSE_FIELDS)
