"""The Redis client factories against a real server."""

from __future__ import annotations

import asyncio
import threading

from core.redis import async_client, sync_client
from core.settings import Settings


def test_every_worker_thread_gets_a_connection_at_once(redis_url: str, key_prefix: str) -> None:
    """A worker at concurrency 256 has all its threads in Redis at the same instant as it starts;
    redis-py 8's default pool (100) refused the rest and left their tasks ACTIVE."""
    threads = 256
    client = sync_client(Settings(redis_url=redis_url, celery_worker_concurrency=threads))
    ready = threading.Barrier(threads)
    errors: list[Exception] = []

    def hold_a_connection() -> None:
        ready.wait()
        try:
            client.blpop([f"{key_prefix}nothing"], timeout=0.5)  # each holds its connection 0.5 s
        except Exception as e:  # noqa: BLE001 - counted and asserted below
            errors.append(e)

    workers = [threading.Thread(target=hold_a_connection) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    client.close()
    assert errors == []


def test_a_loaded_api_waits_for_a_connection_instead_of_failing(redis_url: str, key_prefix: str) -> None:
    """More requests at once than redis-py 8's default pool holds (100): each waits its turn.
    The 101st used to fail at once, and the API answered it with a false "Redis unavailable" 503."""

    async def many_at_once() -> list[object]:
        client = async_client(Settings(redis_url=redis_url))
        try:
            calls = [client.blpop([f"{key_prefix}nothing"], timeout=0.2) for _ in range(300)]
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.aclose()

    results = asyncio.run(many_at_once())
    assert [r for r in results if isinstance(r, Exception)] == []
