"""Celery's Redis transport, made to survive a Redis restart.

With kombu 5.7, a broker connection that drops while messages are unacknowledged kills the
worker ("Unrecoverable error: AttributeError"): closing the channel tries to push those messages
back through the transport it has just closed, and a later ack of a message received on that
channel does the same. So a Redis restart would take every worker down with it.

Neither step matters here. A message only carries one attempt; the truth is in our own Redis
structures. A message that never ran is handed back by its consumer at shutdown or by the lease
reaper, and a copy that comes back late (kombu redelivers a message still unacknowledged after
the visibility timeout) is refused by its attempt token. So this transport skips the restore at
close, and drops an ack whose channel is gone.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

log = logging.getLogger("asynctaskflow.worker")


class QoS(kombu_redis.QoS):
    restore_at_shutdown = False

    def ack(self, delivery_tag: str) -> None:
        if self.channel.connection is None:  # closed when the connection was lost
            log.info("ack of message %s dropped: its broker channel closed meanwhile", delivery_tag)
            return
        super().ack(delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel
