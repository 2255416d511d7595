"""Celery's Redis transport without kombu's acknowledgement emulation.

kombu's Redis transport emulates AMQP acks: every delivered message is copied into an
"unacked" hash and index (one MULTI), removed again at the ack (another MULTI), and restored to
the queue after a visibility timeout or at shutdown. Here that machinery buys nothing and costs
two Redis round trips per task, and with kombu 5.7 its restore on a dropped connection killed
the worker when Redis restarted ("Unrecoverable error: AttributeError").

A message only carries one attempt; the truth is in our own Redis structures. Celery acks the
message as the attempt starts; an attempt whose message is lost (the worker died holding it) is
in its consumer's in-flight list, and the consumer's hand-back at shutdown or the lease reaper
gives the task back. A copy that came back late would be refused by its attempt token anyway.
So messages are tracked in memory only (kombu's plain virtual QoS), and none is pushed back
to the queue at shutdown.

The consumer's dispatches go through this transport too (same Celery app). Under Sentinel the
same channel rides on kombu's Sentinel transport.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

# core.redis also registers a failover's error replies as connection errors.
from core.redis import MasterConnection, MasterSSLConnection


class QoS(virtual.QoS):
    restore_at_shutdown = False


class _Lean:
    """The changes to kombu's Redis channel, for the plain and the Sentinel one alike."""

    ack_emulation = False
    pool: Any
    QoS: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.QoS = QoS  # kombu sets virtual.QoS without ack emulation
        self._publisher: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        """kombu builds a new client object for every message it publishes (a dispatch, a task
        event), about 4 % of the worker's CPU; one per channel and pool serves them all (a
        client is thread-safe, its connections come from the pool)."""
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        if self._publisher is None or self._publisher.connection_pool is not self.pool:
            self._publisher = super()._create_client()  # type: ignore[misc]
        return self._publisher


class Channel(_Lean, kombu_redis.Channel):
    pass


class SentinelChannel(_Lean, kombu_redis.SentinelChannel):
    connection_class = MasterConnection
    connection_class_ssl = MasterSSLConnection  # type: ignore[assignment]  # same bases as kombu's own


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """For REDIS_SENTINELS: the channel finds the master through the sentinels on every
    (re)connection, and a failover's errors are connection errors (core.redis registers them),
    so the worker reconnects to the new master instead of stopping."""

    Channel = SentinelChannel
