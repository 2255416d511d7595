"""Redis connection factories: the one place clients are configured, for every process."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from core.settings import Settings

# Retry a dropped connection a few times with backoff before the error reaches the caller,
# so a Redis restart is a pause, not a crash; loops above this retry forever on their own.
_RETRY_ERRORS = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]


def _options(settings: Settings) -> dict[str, object]:
    return {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_socket_timeout,
        "health_check_interval": 30,
        "retry_on_error": _RETRY_ERRORS,
    }


def sync_client(
    settings: Settings, decode: bool = True, blocking_seconds: float = 0.0, patient: bool = False
) -> redis.Redis:
    """Client for consumer, worker and scheduler. `blocking_seconds` widens the socket timeout
    for a connection that will sit in BLMOVE that long. A `patient` client (the worker's) keeps
    retrying for REDIS_OUTAGE_PATIENCE seconds, so an attempt that finished while Redis restarts
    is still recorded, instead of waiting for its lease to expire and running again."""
    options = _options(settings)
    options["socket_timeout"] = settings.redis_socket_timeout + blocking_seconds
    # Backoff 0.1, 0.2, 0.4, 0.8, then 1 s per retry: about `patience` seconds in all.
    retries = 4 + int(settings.redis_outage_patience) if patient else 3
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=decode,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=retries),
        # Every worker thread may hold a connection at once (all of them do as the worker starts);
        # redis-py 8 caps a pool at 100 and refuses the 101st ("Too many connections").
        max_connections=max(100, settings.celery_worker_concurrency + 16),
        **options,  # type: ignore[arg-type]
    )


# Connections the API opens at most; past that a request waits for a free one (up to the socket
# timeout) instead of failing. redis-py 8 caps a pool at 100 and refuses the 101st at once, which
# a loaded API turned into false "Redis unavailable" 503s (bench section 3).
API_CONNECTIONS = 1000


def async_client(settings: Settings) -> aioredis.Redis:
    """Client for the API: it retries once and then fails fast, so a request gets its 503 quickly."""
    from redis.asyncio.retry import Retry as AsyncRetry

    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=API_CONNECTIONS,
        timeout=settings.redis_socket_timeout,
        decode_responses=True,
        retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
        **_options(settings),
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool
