"""GET /api/v1/usage (issue 18): a key's limits and use, whose usage each scope may read, and the
holds the claim puts on a key over a limit, on the session's real Redis. The limits are written
to Redis as the consumers write them at their start (`set_limits`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import redis

from api.main import create_app
from core.settings import KeyLimits, Settings
from core.store import TaskStore, new_token
from tests.api.auth_helpers import ADMIN, ALICE, BOB, keyed
from tests.api.conftest import Pipeline, serve

pytestmark = pytest.mark.anyio
USAGE = "/api/v1/usage"
DAY_MS = 86_400_000
LIMITS = {"alice": KeyLimits(concurrency=1), "*": KeyLimits(daily_tokens=100)}


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return keyed(settings, api_key_limits=LIMITS)


@pytest.fixture
async def keyed_api(limited: Settings, sync_store: TaskStore) -> AsyncIterator[httpx.AsyncClient]:
    sync_store.set_limits(limited.limit_fields)  # what a consumer does at its start
    async for c in serve(create_app(limited)):
        yield c


def today(real_redis: redis.Redis) -> str:
    """The Redis server's UTC day, as the usage names it."""
    return datetime.fromtimestamp(real_redis.time()[0], UTC).date().isoformat()


async def submit(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> str:
    response = await client.post("/api/v1/tasks/summarize/", json={"content": "A text."}, headers=headers)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_without_keys_the_usage_is_the_open_apis_own(client: httpx.AsyncClient, real_redis: redis.Redis) -> None:
    await submit(client)
    await submit(client)

    response = await client.get(USAGE)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "key": "", "day": today(real_redis), "limits": {"concurrency": None, "daily_tokens": None},
        "active": 0, "backlog": 2, "tokens_today": 0, "waiting": None, "resumes_at": None,
    }  # fmt: skip
    assert (await client.get(USAGE, params={"key": ""})).json()["key"] == "", "an empty key is no key"


async def test_without_keys_naming_a_key_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get(USAGE, params={"key": "alice"})
    assert (response.status_code, response.json()["code"]) == (422, "no_api_keys")
    assert "key" in response.json()["message"]


async def test_each_key_reads_its_own_with_its_limits_or_the_default_ones(
    keyed_api: httpx.AsyncClient, real_redis: redis.Redis
) -> None:
    await submit(keyed_api, ALICE)

    alice = (await keyed_api.get(USAGE, headers=ALICE)).json()
    bob = (await keyed_api.get(USAGE, headers=BOB)).json()

    # Field by field, a key's own limit, else the one of "*" (as the claim reads them).
    assert (alice["key"], alice["limits"], alice["backlog"]) == ("alice", {"concurrency": 1, "daily_tokens": 100}, 1)
    assert (bob["key"], bob["limits"], bob["backlog"]) == ("bob", {"concurrency": None, "daily_tokens": 100}, 0)
    assert alice["day"] == bob["day"] == today(real_redis)
    assert (await keyed_api.get(USAGE, params={"key": "alice"}, headers=ALICE)).json() == alice


async def test_a_submit_key_may_not_name_another_key_real_or_not(keyed_api: httpx.AsyncClient) -> None:
    for other in ("bob", "ops", "nobody"):  # 403 either way: a submit key cannot probe which ids exist
        response = await keyed_api.get(USAGE, params={"key": other}, headers=ALICE)
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), other
        assert "admin" in response.json()["message"]


async def test_an_admin_key_reads_any_configured_key(keyed_api: httpx.AsyncClient) -> None:
    await submit(keyed_api, BOB)

    bob = await keyed_api.get(USAGE, params={"key": "bob"}, headers=ADMIN)
    own = await keyed_api.get(USAGE, headers=ADMIN)
    unknown = await keyed_api.get(USAGE, params={"key": "nobody"}, headers=ADMIN)
    too_long = await keyed_api.get(USAGE, params={"key": "k" * 65}, headers=ADMIN)

    assert (bob.json()["key"], bob.json()["backlog"]) == ("bob", 1)
    assert (own.json()["key"], own.json()["limits"]) == ("ops", {"concurrency": None, "daily_tokens": 100})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "key_not_found")
    assert "nobody" in unknown.json()["message"]
    assert (too_long.status_code, too_long.json()["code"]) == (422, "validation_error")


async def test_a_key_at_its_concurrency_waits_until_one_of_its_tasks_ends(
    keyed_api: httpx.AsyncClient, sync_store: TaskStore
) -> None:
    first, _second = await submit(keyed_api, ALICE), await submit(keyed_api, ALICE)
    pipeline = Pipeline(sync_store)
    pipeline.claim(first)
    assert sync_store.claim("consumer-2", new_token(), prefer_retry=False).status == "empty", "alice is held"

    usage = (await keyed_api.get(USAGE, headers=ALICE)).json()

    assert (usage["active"], usage["backlog"]) == (1, 1)
    assert (usage["waiting"], usage["resumes_at"]) == ("concurrency", None)


async def test_a_key_past_its_daily_tokens_waits_for_the_next_utc_day(
    keyed_api: httpx.AsyncClient, sync_store: TaskStore, real_redis: redis.Redis
) -> None:
    first, _second = await submit(keyed_api, BOB), await submit(keyed_api, BOB)
    pipeline = Pipeline(sync_store)
    pipeline.claim(first)
    spent = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    sync_store.complete(first, pipeline.consumer_id, pipeline.tokens[first], "sum", "openrouter", "m", spent)
    assert sync_store.claim("consumer-2", new_token(), prefer_retry=False).status == "empty", "bob is held"

    usage = (await keyed_api.get(USAGE, headers=BOB)).json()

    assert (usage["tokens_today"], usage["active"], usage["backlog"]) == (150, 0, 1)
    next_day = (real_redis.time()[0] // 86400 + 1) * DAY_MS
    assert (usage["waiting"], usage["resumes_at"]) == ("daily_tokens", next_day)
