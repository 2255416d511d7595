"""Redis clients for every process, in each deployment mode: the one place they are configured.

- One Redis: `REDIS_URL`.
- Sentinel (high availability): `REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER`. Every client
  asks the sentinels for the master on each new connection, and drops its connections when a
  failover moves the master; `REDIS_URL` still gives the database, the password and TLS.
- Redis Cluster: `REDIS_CLUSTER_NODES` (seed nodes). The client learns the slots' masters and
  follows MOVED/ASK and failovers itself; `REDIS_URL` still gives the password and TLS. Every
  key carries the deployment's hash tag (`core.keys.deployment_keys`), so a script's keys share
  one slot.

Either way a failover reads as "Redis unavailable for a moment": the error codes a demoted or
isolated server answers with are ConnectionErrors here (see `core.errors`), so clients reconnect
and retry, the API answers 503, and the loops back off. `Durability` makes a write that must
survive a failover wait for replicas (REDIS_MIN_REPLICAS_ACK).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelManagedConnection as AsyncSentinelConnection
from redis.asyncio.sentinel import SentinelManagedSSLConnection as AsyncSentinelSSLConnection
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.exceptions import ClusterError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

from core.errors import ClusterUnavailable, MasterLinkDown, NotEnoughReplicas, NotReplicated, ReplicaNotMaster
from core.settings import Settings

# redis-py parses these replies into a bare ResponseError (or a ReadOnlyError that no retry
# covers): registered here, every client in the process, kombu's included, reconnects on them.
BaseParser.EXCEPTION_CLASSES.update(
    {"READONLY": ReplicaNotMaster, "NOREPLICAS": NotEnoughReplicas, "MASTERDOWN": MasterLinkDown}
)
# A script that only reads (a refusal: not found, stale) runs on a replica without READONLY;
# the WAIT after it is what tells.
_WAIT_ON_REPLICA = (
    "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is "
    "configured to be writable (which is not the default) writes to replicas are just local and are not propagated."
)
_ERR_CLASSES = BaseParser.EXCEPTION_CLASSES["ERR"]
assert isinstance(_ERR_CLASSES, dict)
_ERR_CLASSES[_WAIT_ON_REPLICA] = ReplicaNotMaster

# A client of one Redis (or its Sentinel-managed master), or of a Redis Cluster.
SyncClient = redis.Redis | RedisCluster
AsyncClient = aioredis.Redis | AsyncRedisCluster

# Retry a dropped connection a few times with backoff before the error reaches the caller,
# so a Redis restart is a pause, not a crash; loops above this retry forever on their own.
# ConnectionError covers the failover errors above.
_RETRY_ERRORS = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_socket_timeout,
        "health_check_interval": 30,
        "retry_on_error": _RETRY_ERRORS,
    }


def _with_db(url: str, db: int | None) -> str:
    return url if db is None else urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def _master_options(settings: Settings, db: int | None, plain: type, tls: type) -> dict[str, Any]:
    """What REDIS_URL says besides where the server is (database, credentials, TLS), for a
    connection of class `plain`, or `tls` for a rediss:// URL."""
    parsed = parse_url(_with_db(settings.redis_url, db))
    options = {k: v for k, v in parsed.items() if k not in ("host", "port", "connection_class")}
    options["connection_class"] = tls if urlsplit(settings.redis_url).scheme == "rediss" else plain
    return options


def _cluster_options(settings: Settings) -> dict[str, Any]:
    """What REDIS_URL says besides where the server is, for a cluster client: credentials and TLS."""
    parsed = parse_url(settings.redis_url)
    options = {k: v for k, v in parsed.items() if k in ("username", "password") or k.startswith("ssl_")}
    if urlsplit(settings.redis_url).scheme == "rediss":
        options["ssl"] = True
    return options


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    password = settings.redis_sentinel_password
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_socket_timeout,
    }
    if password is not None and password.get_secret_value():
        options["password"] = password.get_secret_value()
    return options


# --- Sentinel: a connection is to the master, or it is not made ------------------------------
def _settled(state: dict[str, Any]) -> bool:
    """A sentinel that is leading a failover still names the old master until it ends, seconds
    after the promotion, while the others already name the new one: ask those instead."""
    return "failover_in_progress" not in str(state.get("flags", ""))


class _Sentinel(Sentinel):
    def check_master_state(self, state: dict[str, Any], service_name: str) -> bool:
        return bool(super().check_master_state(state, service_name)) and _settled(state)


class _AsyncSentinel(AsyncSentinel):
    def check_master_state(self, state: dict[str, Any], service_name: str) -> bool:
        return bool(super().check_master_state(state, service_name)) and _settled(state)


def _not_master(address: tuple[str, int], role: Any) -> RedisConnectionError | None:
    name = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
    return None if name == "master" else RedisConnectionError(f"{address[0]}:{address[1]} is a {name}, not the master")


class MasterConnection(SentinelManagedConnection):
    """Asks the sentinels for the master every time it (re)connects, and checks with ROLE that it
    reached one. redis-py reconnects a dropped connection to the host it had, without asking the
    sentinels (so a client retried on the deposed master for as long as its retries lasted), and a
    sentinel that has not yet heard of a failover names the old master, which is a replica by then
    or soon: a script that only reads would run there without an error and find nothing."""

    def _connect_retry(self) -> None:
        self.connect_check_health(check_health=self.connection_pool.check_connection, retry_socket_connect=False)

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        self.host, self.port = address = self.connection_pool.get_master_address()
        super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)
        self.send_command("ROLE")
        error = _not_master(address, self.read_response())
        if error:
            self.disconnect()
            raise error


class MasterSSLConnection(MasterConnection, SentinelManagedSSLConnection):
    pass


class _AsyncMasterConnection(AsyncSentinelConnection):
    """As `MasterConnection`, for the API."""

    async def _connect_retry(self) -> None:
        await self.connect_check_health(
            check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )

    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self.is_connected:
            return
        self.host, self.port = address = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)
        await self.send_command("ROLE")
        error = _not_master(address, await self.read_response())
        if error:
            await self.disconnect()
            raise error


class _AsyncMasterSSLConnection(_AsyncMasterConnection, AsyncSentinelSSLConnection):
    pass


# --- Cluster: a failover is "unavailable for a moment" too -----------------------------------
# What redis-py's cluster clients raise while a slot has no master: SlotNotCoveredError and the
# like are no RedisError, so a loop that retries on RedisError would die of them.
_CLUSTER_TROUBLE = (RedisClusterException, ClusterError)


class Cluster(RedisCluster):
    """redis-py's cluster client, its cluster errors raised as `ClusterUnavailable`."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)
        except _CLUSTER_TROUBLE as e:
            raise ClusterUnavailable(f"Redis Cluster unavailable: {e}") from e


class AsyncCluster(AsyncRedisCluster):
    """As `Cluster`, for the API; it also learns the cluster before its first command: many first
    commands at once (a burst of submits) otherwise share the seed node's one connection while it
    is still being set up, and fail ('NoneType' object has no attribute 'writelines')."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if self._initialize:
                await self.initialize()
            return await super().execute_command(*args, **kwargs)
        except _CLUSTER_TROUBLE as e:
            raise ClusterUnavailable(f"Redis Cluster unavailable: {e}") from e


async def learned(client: Any) -> Any:
    """The asyncio client, knowing the cluster's slots if it is a cluster's (it learns them at its
    first command; `Durability.wait_route` asks before any)."""
    if isinstance(client, AsyncRedisCluster):
        await client.initialize()
    return client


def sync_client(
    settings: Settings,
    decode: bool = True,
    blocking_seconds: float = 0.0,
    patient: bool = False,
    db: int | None = None,
) -> SyncClient:
    """Client for consumer, worker, scheduler and tools. `blocking_seconds` widens the socket
    timeout for a connection that will sit in a blocking wait (BLPOP) that long. A `patient` client (the worker's)
    keeps retrying for REDIS_OUTAGE_PATIENCE seconds, so an attempt that finished while Redis
    restarts or fails over is still recorded, instead of waiting for its lease to expire and
    running again. `db` picks another database than REDIS_URL's (Celery's broker)."""
    options = _options(settings)
    options["socket_timeout"] = settings.redis_socket_timeout + blocking_seconds
    # Backoff 0.1, 0.2, 0.4, 0.8, then 1 s per retry: about `patience` seconds in all.
    retries = 4 + int(settings.redis_outage_patience) if patient else 3
    options["retry"] = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=retries)
    # Every worker thread may hold a connection at once (all of them do as the worker starts);
    # redis-py 8 caps a pool at 100 and refuses the 101st ("Too many connections").
    options["max_connections"] = max(100, settings.celery_worker_concurrency + 16)
    if settings.cluster_addresses:
        nodes = [ClusterNode(host, port) for host, port in settings.cluster_addresses]
        return Cluster(startup_nodes=nodes, decode_responses=decode, **_cluster_options(settings), **options)
    if settings.sentinel_addresses:
        sentinel = _Sentinel(settings.sentinel_addresses, sentinel_kwargs=_sentinel_options(settings))
        master_options = _master_options(settings, db, MasterConnection, MasterSSLConnection)
        return sentinel.master_for(
            settings.redis_sentinel_master, decode_responses=decode, **master_options, **options
        )
    return redis.Redis.from_url(_with_db(settings.redis_url, db), decode_responses=decode, **options)


# Connections the API opens at most; past that a request waits for a free one (up to the socket
# timeout) instead of failing. redis-py 8 caps a pool at 100 and refuses the 101st at once, which
# a loaded API turned into false "Redis unavailable" 503s (bench section 3).
API_CONNECTIONS = 1000


def async_client(settings: Settings) -> AsyncClient:
    """Client for the API: it retries once and then fails fast, so a request gets its 503 quickly."""
    from redis.asyncio.retry import Retry as AsyncRetry

    retry = AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), retries=1)
    if settings.cluster_addresses:
        return AsyncCluster(
            startup_nodes=[AsyncClusterNode(host, port) for host, port in settings.cluster_addresses],
            max_connections=API_CONNECTIONS,
            decode_responses=True,
            retry=retry,
            **_cluster_options(settings),
            **_options(settings),
        )
    if settings.sentinel_addresses:
        sentinel = _AsyncSentinel(settings.sentinel_addresses, sentinel_kwargs=_sentinel_options(settings))
        master_options = _master_options(settings, None, _AsyncMasterConnection, _AsyncMasterSSLConnection)
        return sentinel.master_for(
            settings.redis_sentinel_master,
            max_connections=API_CONNECTIONS,
            decode_responses=True,
            retry=retry,
            **master_options,
            **_options(settings),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=API_CONNECTIONS,
        timeout=settings.redis_socket_timeout,
        decode_responses=True,
        retry=retry,
        **_options(settings),
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


def redis_location(settings: Settings) -> str:
    """Where the data lives, fit for a log line or a reply: no password."""
    parts = urlsplit(settings.redis_url)
    database = parts.path.strip("/") or "0"
    if settings.cluster_addresses:
        return "Redis Cluster via " + ",".join(f"{host}:{port}" for host, port in settings.cluster_addresses)
    if settings.sentinel_addresses:
        sentinels = ",".join(f"{host}:{port}" for host, port in settings.sentinel_addresses)
        return f"sentinel master {settings.redis_sentinel_master!r} via {sentinels}, database {database}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}/{database}"


def broker_client(settings: Settings) -> SyncClient | None:
    """Celery's broker as a Redis client, for the reset tool: database CELERY_BROKER_DB of our
    server, or CELERY_BROKER_URL when it names a Redis; None for another broker (RabbitMQ, a
    `sentinel://` URL of its own), whose queues its own tools manage."""
    if not settings.celery_broker_url:
        return sync_client(settings, db=settings.celery_broker_db)
    if urlsplit(settings.celery_broker_url).scheme in ("redis", "rediss"):
        return redis.Redis.from_url(settings.celery_broker_url, decode_responses=True)
    return None


def celery_transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's transport options for the broker URL (`Settings.broker_url`): for a `sentinel://`
    broker, the master's name and the sentinels' password."""
    if not settings.broker_url.startswith("sentinel://") or not settings.redis_sentinel_master:
        return {}
    options: dict[str, Any] = {"master_name": settings.redis_sentinel_master}
    sentinel = _sentinel_options(settings)
    if "password" in sentinel:
        options["sentinel_kwargs"] = {"password": sentinel["password"]}
    return options


# --- writes that must survive a failover ------------------------------------------------------
def failover_suspected(masters: Sequence[dict[str, Any] | None], written_to: tuple[str, int] | None) -> bool:
    """Whether a write acknowledged on `written_to` may sit on a deposed master, judging by each
    sentinel's view of the master (None: that sentinel did not answer).

    During a planned failover the old master keeps accepting writes for a second or more after a
    replica was promoted, and its other replicas acknowledge them; the resync later discards them.
    The sentinel leading the failover flags it from before the promotion, and the others soon name
    the new master, so a write confirmed after asking them all is one the new master has."""
    for master in masters:
        if master is None:
            continue
        if not _settled(master):
            return True
        if written_to is not None and (master.get("ip"), int(master.get("port", 0))) != written_to:
            return True
    return False


class Durability:
    """What a write that must survive a failover waits for before it counts as done: WAIT for
    REDIS_MIN_REPLICAS_ACK replicas (bounded by REDIS_REPLICA_ACK_TIMEOUT_MS), then, under
    Sentinel, no sign of a failover from any sentinel. `NotReplicated` otherwise. Inactive
    (`replicas` 0, the default) it costs nothing."""

    def __init__(self, settings: Settings) -> None:
        self.replicas = settings.redis_min_replicas_ack
        self.timeout_ms = settings.redis_replica_ack_timeout_ms
        self.patience = settings.redis_outage_patience
        self._master = settings.redis_sentinel_master
        self._addresses = settings.sentinel_addresses
        self._options = _sentinel_options(settings)
        self._sync: list[redis.Redis] | None = None
        self._async: list[aioredis.Redis] | None = None

    @property
    def wait_command(self) -> tuple[str, int, int]:
        return ("WAIT", self.replicas, self.timeout_ms)

    @staticmethod
    def wait_route(client: Any, key: str) -> dict[str, Any]:
        """Where WAIT goes in a pipeline after a write to `key`. WAIT names no key, so a cluster
        client would send it to any node: it must go to the master of the key's slot, where the
        pipeline sends it on the write's own connection (WAIT counts that connection's writes)."""
        if isinstance(client, RedisCluster | AsyncRedisCluster):
            return {"target_nodes": client.get_node_from_key(key)}
        return {}

    def _refuse(self, acked: int | None) -> None:
        if acked is not None and acked < self.replicas:
            raise NotReplicated(f"the write reached {acked} of {self.replicas} replicas in {self.timeout_ms} ms")

    def confirm(self, client: redis.Redis, acked: int | None) -> None:
        """Raise NotReplicated unless `acked` replicas suffice and no sentinel suspects a failover.
        `acked` None: the script refused and wrote nothing; the refusal counts only if it came
        from the master (a deposed one would not know of a task created since)."""
        self._refuse(acked)
        if not self._addresses:
            return
        if self._sync is None:
            self._sync = [redis.Redis(host, port, **self._options) for host, port in self._addresses]
        masters = [self._ask(s) for s in self._sync]
        if failover_suspected(masters, _written_to(client)):
            # Ask the sentinels now: the pool drops its idle connections if the master moved, instead
            # of writing on to a deposed master until that one is demoted.
            pool: Any = client.connection_pool
            with contextlib.suppress(RedisError):
                pool.get_master_address()
            raise NotReplicated(_FAILOVER)

    async def confirm_async(self, client: aioredis.Redis, acked: int | None) -> None:
        """As `confirm`, for the API's asyncio client."""
        self._refuse(acked)
        if not self._addresses:
            return
        if self._async is None:
            self._async = [aioredis.Redis(host=host, port=port, **self._options) for host, port in self._addresses]
        masters = await asyncio.gather(*(self._ask_async(s) for s in self._async))
        if failover_suspected(masters, _written_to(client)):
            pool: Any = client.connection_pool
            with contextlib.suppress(RedisError):  # as in `confirm`
                await pool.get_master_address()
            raise NotReplicated(_FAILOVER)

    def _ask(self, sentinel: redis.Redis) -> dict[str, Any] | None:
        try:
            master: dict[str, Any] = sentinel.sentinel_master(self._master)  # type: ignore[assignment]
            return master
        except (RedisError, OSError):
            return None

    async def _ask_async(self, sentinel: aioredis.Redis) -> dict[str, Any] | None:
        try:
            master: dict[str, Any] = await sentinel.sentinel_master(self._master)  # type: ignore[assignment]
            return master
        except (RedisError, OSError):
            return None


_FAILOVER = "a Redis failover is under way; the write may not survive it"


def _written_to(client: Any) -> tuple[str, int] | None:
    """The master a Sentinel-managed client last connected to (None for a plain client)."""
    address = getattr(client.connection_pool, "master_address", None)
    return (str(address[0]), int(address[1])) if address else None


# --- quick looks at a server (the launcher and the test fixtures start their own) ----------------
def reachable(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis answers at `url` within `timeout` s."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        with contextlib.closing(client):
            return bool(client.ping())
    except (RedisError, OSError):
        return False


def cluster_ok(port: int) -> bool:
    """The cluster node on 127.0.0.1:`port` answers and reports every slot served (cluster_state:ok)."""
    try:
        with contextlib.closing(redis.Redis(port=port, socket_timeout=2, decode_responses=True)) as client:
            return "cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
    except (RedisError, OSError):
        return False
