"""The message queue of the socketio instances: python-socketio's pub/sub
manager on Redis, made to survive a Redis restart.

python-socketio's own RedisManager waits 1, 2, 4 ... up to 60 s between
attempts to listen again, so after an outage of 15 s an instance heard
nothing for up to 16 s more, and the pushes published meanwhile never
reached its clients, which stayed connected and never knew. This manager
(a subclass of ``PubSubManager``, the documented way to bring a queue of
one's own) tries again every ``RETRY_INTERVAL`` seconds, and each time it
starts listening tells its clients to catch up (the ``resync`` event: the
chat page then reads the changes feeds, as after a reconnection). The
services that publish send ``resync`` themselves when they could not
publish for a while (microflack_common.events).
"""
import logging
import time

import redis
import socketio

from microflack_common.events import RESYNC_EVENT

logger = logging.getLogger(__name__)

# Seconds between attempts while Redis does not answer.
RETRY_INTERVAL = 0.5
CONNECT_TIMEOUT = 2


class RedisQueue(socketio.PubSubManager):
    name = 'redis'

    def __init__(self, url, channel, retry_interval=RETRY_INTERVAL,
                 write_only=False):
        super().__init__(channel=channel, write_only=write_only)
        self.url = url
        self.retry_interval = retry_interval
        self._publisher = None

    def _connect(self):
        return redis.Redis.from_url(self.url,
                                    socket_connect_timeout=CONNECT_TIMEOUT,
                                    socket_keepalive=True)

    def _publish(self, data):
        """Publish for the other instances; one new connection if the one
        held broke."""
        message = self.json.dumps(data)
        for attempt in (1, 2):
            try:
                if self._publisher is None:
                    self._publisher = self._connect()
                return self._publisher.publish(self.channel, message)
            except redis.RedisError as exc:
                self._publisher = None
                if attempt == 2:
                    logger.error('cannot publish to Redis (%s); dropped',
                                 exc)
        return None

    def _listen(self):
        """The messages of the channel, for ever: a lost connection is
        replaced as soon as Redis answers, and the clients of this
        instance are then told that pushes may have been missed."""
        lost_since = None
        while True:
            pubsub = None
            try:
                pubsub = self._connect().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                if lost_since is not None:
                    logger.info('listening to Redis again after %.1f s; '
                                'clients told to catch up',
                                time.monotonic() - lost_since)
                    lost_since = None
                # Also the first time: the server subscribes when its first
                # client connects, and a push published in between reached
                # nobody here.
                self.emit(RESYNC_EVENT, {}, namespace='/', ignore_queue=True)
                for message in pubsub.listen():
                    if message.get('type') == 'message':
                        yield message['data']
            except redis.RedisError as exc:
                if lost_since is None:
                    lost_since = time.monotonic()
                    logger.warning('cannot listen to Redis (%s); trying '
                                   'again every %s s', exc,
                                   self.retry_interval)
                self.server.sleep(self.retry_interval)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except redis.RedisError:
                        pass
