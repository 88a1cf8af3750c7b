"""``updated_model`` pushes to the browsers, through the Redis message queue.

Services with models (users, messages) push ``{"class": ..., "model": ...}``
after every commit that inserted or updated one. The event is published on
the Redis channel that every socketio instance listens on (python-socketio's
Redis manager), which broadcasts it to all connected clients.

Publishing happens on a background thread fed by a bounded queue, so a slow
or dead Redis never delays an API response: while Redis is down the events
are dropped with a log line, and when it is back (tried every second) a
``resync`` event tells every client to catch up on what it missed.
"""
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

EVENT = 'updated_model'
# Tells the clients that pushes may have been lost (the message queue was
# away): they catch up from the REST API's changes feeds.
RESYNC_EVENT = 'resync'
CHANNEL = 'flask-socketio'     # Flask-SocketIO's default; REDIS_CHANNEL changes it
QUEUE_LIMIT = 10000
RETRY_INTERVAL = 1.0     # seconds between attempts while Redis is down
REDIS_TIMEOUT = 2.0      # seconds: a hung Redis cannot stall the pusher


def redis_url(redis):
    """``host:port`` (SPEC's REDIS) or a redis:// URL, as a redis:// URL."""
    if redis.startswith(('redis://', 'rediss://')):
        return redis
    return f'redis://{redis}/0'


class RedisError(Exception):
    """Redis answered with an error, or not at all."""


class RedisPublisher:
    """Emits events to the socketio instances the way python-socketio's
    write-only Redis manager does (the same JSON message on the same
    channel), speaking the Redis protocol itself: a service that only
    pushes needs neither Flask-SocketIO nor a Redis client library, about
    8 MiB less in each of its workers. Used from one thread; a failure
    raises and the next call connects again."""

    def __init__(self, redis, channel=CHANNEL, timeout=REDIS_TIMEOUT):
        url = urlsplit(redis_url(redis))
        self.address = (url.hostname or '127.0.0.1', url.port or 6379)
        self.tls = url.scheme == 'rediss'
        # AUTH [user] password: a user name alone authenticates nothing.
        self.credentials = ()
        if url.password:
            self.credentials = (unquote(url.password),)
            if url.username:
                self.credentials = (unquote(url.username), *self.credentials)
        self.database = int(url.path.strip('/') or 0)
        self.channel = channel
        self.timeout = timeout
        self.host_id = uuid.uuid4().hex
        self._socket = self._replies = None

    def emit(self, event, data, namespace='/'):
        message = {'method': 'emit', 'event': event, 'data': [data],
                   'binary': False, 'namespace': namespace, 'room': None,
                   'skip_sid': None, 'callback': None,
                   'host_id': self.host_id}
        return self.command('PUBLISH', self.channel, json.dumps(message))

    def command(self, *args):
        """Send one command; its reply (a string), or RedisError. A kept
        connection that turns out dead (Redis restarted since) is replaced
        at once and the command sent again on the new one."""
        for attempt in (1, 2):
            kept = self._socket is not None
            try:
                if not kept:
                    self._connect()
                return self._call(args)
            except Exception:
                self.close()
                if not kept or attempt == 2:
                    raise
        raise AssertionError('unreachable')

    def close(self):
        if self._socket is not None:
            self._replies.close()
            self._socket.close()
        self._socket = self._replies = None

    def _connect(self):
        sock = socket.create_connection(self.address, timeout=self.timeout)
        if self.tls:
            import ssl
            sock = ssl.create_default_context().wrap_socket(
                sock, server_hostname=self.address[0])
        self._socket, self._replies = sock, sock.makefile('rb')
        if self.credentials:
            self._call(('AUTH', *self.credentials))
        if self.database:
            self._call(('SELECT', str(self.database)))

    def _call(self, args):
        request = [b'*%d\r\n' % len(args)]
        for arg in args:
            raw = arg.encode() if isinstance(arg, str) else arg
            request.append(b'$%d\r\n%s\r\n' % (len(raw), raw))
        self._socket.sendall(b''.join(request))
        line = self._replies.readline()
        if not line.endswith(b'\r\n'):
            raise RedisError('Redis closed the connection')
        kind, value = line[:1], line[1:-2].decode(errors='replace')
        if kind == b'-':
            raise RedisError(value)
        if kind not in (b'+', b':'):
            raise RedisError(f'unexpected reply from Redis: {line[:80]!r}')
        return value


class ModelPusher:
    """Publishes ``updated_model`` events; ``emitter_factory`` makes any
    object with an ``emit(event, data)`` (Flask-SocketIO's signature), a
    :class:`RedisPublisher` in production."""

    def __init__(self, emitter_factory):
        self._emitter_factory = emitter_factory
        self._emitter = None
        self._queue = None
        self._thread = None
        self._pid = None
        self._lock = threading.Lock()
        self._failing = False
        self._retry_at = 0.0

    @classmethod
    def from_redis(cls, redis, channel=CHANNEL):
        """A pusher for the Redis at ``redis`` (publishing on ``channel``,
        the one the socketio instances listen on); a no-op one when unset."""
        if not redis:
            return NullPusher()
        return cls(lambda: RedisPublisher(redis, channel or CHANNEL))

    def push(self, class_name, model):
        self._ensure_thread()
        try:
            self._queue.put_nowait({'class': class_name, 'model': model})
        except queue.Full:
            logger.warning('push queue full: %s update dropped', class_name)

    def _ensure_thread(self):
        # After a fork (gunicorn workers) the parent's thread is gone.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.Queue(QUEUE_LIMIT)
                self._emitter = None
                self._thread = threading.Thread(
                    target=self._run, name='model-pusher', daemon=True)
                self._thread.start()
                self._pid = os.getpid()

    def _run(self):
        while True:
            try:
                # While failing, wake up to try again even if nothing is
                # pushed: the clients must hear that they missed pushes.
                event = self._queue.get(
                    timeout=RETRY_INTERVAL if self._failing else None)
            except queue.Empty:
                self._publish(None)
                continue
            if event is None:
                self._queue.task_done()
                return
            try:
                self._publish(event)
            finally:
                self._queue.task_done()

    def _publish(self, event):
        """Emit one event (None: only try the queue again after a
        failure); once the queue is back, a resync first."""
        now = time.monotonic()
        if self._failing and now < self._retry_at:
            return      # dropped: the message queue was down a moment ago
        try:
            if self._emitter is None:
                self._emitter = self._emitter_factory()
            if self._failing:
                self._emitter.emit(RESYNC_EVENT, {})
                logger.info('message queue reachable again: pushes resumed, '
                            'clients told to catch up')
                self._failing = False
            if event is not None:
                self._emitter.emit(EVENT, event)
            return
        except Exception as exc:  # noqa: BLE001 - any failure drops the event
            error = exc
        if not self._failing:
            logger.warning('cannot push %s (%s); dropping pushes until the '
                           'message queue is back',
                           f"{event['class']} update" if event else 'events',
                           error)
            self._failing = True
        self._retry_at = now + RETRY_INTERVAL

    def flush(self, timeout=5.0):
        """Wait until queued events are published (tests, shutdown)."""
        if self._pid != os.getpid():
            return True
        done = threading.Event()

        def waiter():
            self._queue.join()
            done.set()
        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout)


class NullPusher:
    """Used when REDIS is not set: pushes go nowhere."""

    def push(self, class_name, model):
        pass

    def flush(self, timeout=5.0):
        return True


def track_model_changes(session_class, model_classes):
    """Push every inserted or updated instance of ``model_classes`` after
    the transaction that wrote it commits.

    ``model_classes`` maps a model class to the name pushed as ``class``;
    each instance must have ``to_dict()``. ``session_class`` is the
    SQLAlchemy session (or sessionmaker) to listen on.
    """
    from flask import current_app
    from sqlalchemy import event

    # Serialised right after the flush (ids are known, attributes loaded),
    # pushed only once the transaction commits.
    def collect(session, flush_context):
        pending = session.info.setdefault('microflack_pushes', {})
        for instance in list(session.new) + list(session.dirty):
            name = model_classes.get(type(instance))
            if name is not None and (instance in session.new
                                     or session.is_modified(instance)):
                pending[id(instance)] = (name, instance.to_dict())

    def publish(session):
        pending = session.info.pop('microflack_pushes', None)
        if not pending:
            return
        pusher = current_app.extensions['microflack'].pusher
        for name, model in pending.values():
            pusher.push(name, model)

    def discard(session):
        session.info.pop('microflack_pushes', None)

    event.listen(session_class, 'after_flush', collect)
    event.listen(session_class, 'after_commit', publish)
    event.listen(session_class, 'after_rollback', discard)
