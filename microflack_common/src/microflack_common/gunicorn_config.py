"""gunicorn settings and hooks every service runs with::

    gunicorn -c python:microflack_common.gunicorn_config wsgi:app

The gunicorn master registers the instance in etcd once it listens (one
registration per instance, whatever the number of workers, and no extra
process for it), keeps the registration alive from a thread, and on SIGTERM
deregisters first, waits ``DRAIN_GRACE`` seconds for the load balancer to
stop routing new requests here, then lets gunicorn finish the requests in
flight and exit. Loading this module also makes gunicorn send a response's
headers with its body (:func:`send_headers_with_the_body`).
"""
import logging
import os
import queue
import signal
import threading
import time

from .config import env_float, env_int

logger = logging.getLogger('microflack.gunicorn')

# Settings gunicorn reads from this module (command-line flags win).
bind = os.environ.get('SERVICE_ADDRESS', '127.0.0.1:5000')
# Two workers: an instance can use both cores of a small host (one Python
# process is bound to one core by its GIL); WEB_CONCURRENCY changes it.
workers = env_int('WEB_CONCURRENCY', 2)
worker_class = os.environ.get('GUNICORN_WORKER_CLASS', 'gthread')
threads = env_int('GUNICORN_THREADS', 4)
graceful_timeout = env_int('GRACEFUL_TIMEOUT', 4)
# Seconds an idle connection stays open: longer than the load balancer's
# client keep-alive (10 s), whose server connections it is.
keepalive = env_int('GUNICORN_KEEPALIVE', 15)
timeout = env_int('GUNICORN_TIMEOUT', 30)
accesslog = os.environ.get('GUNICORN_ACCESSLOG') or None
control_socket_disable = True    # gunicorn 27+: several instances per folder

DRAIN_GRACE = env_float('DRAIN_GRACE', 1.0)

_registration = None


class _Captured:
    """Stands in for a client socket while gunicorn writes headers."""

    def __init__(self):
        self.data = b''

    def sendall(self, data):
        self.data += data


def send_headers_with_the_body(response_class):
    """Make gunicorn send a response's headers together with its first body
    bytes, in one ``sendall``: it sends them with two, which costs a system
    call in the worker and a TCP segment that the load balancer (or any
    client) must wake up for. Measured: HAProxy spends about 12 µs (15%)
    less CPU per proxied request. Only ``write()`` (a body from the app's
    iterable, not chunked) defers; the other paths (no body, sendfile,
    chunked) send headers as gunicorn does. Applied once to gunicorn's
    Response class; a gunicorn without the methods relied on is left as
    it is. Returns whether it was applied."""
    if not all(hasattr(response_class, name) for name in
               ('write', 'send_headers', '_emit_body')) \
            or getattr(response_class, '_joins_headers_and_body', False):
        return False
    original_write = response_class.write
    original_send_headers = response_class.send_headers
    original_emit_body = response_class._emit_body

    def send_headers(self):
        if not self._deferring_headers or self.headers_sent or self.chunked:
            return original_send_headers(self)
        sock, self.sock = self.sock, _Captured()
        try:
            original_send_headers(self)
        finally:
            captured, self.sock = self.sock, sock
        self._pending_headers = captured.data

    def emit_body(self, data):
        if self._pending_headers:
            data, self._pending_headers = self._pending_headers + data, b''
        original_emit_body(self, data)

    def write(self, arg):
        self._deferring_headers = True
        try:
            original_write(self, arg)
        finally:
            self._deferring_headers = False
            # write() returned without body bytes to send (none left to
            # send, a body-less response, or an error): headers alone.
            if self._pending_headers:
                pending, self._pending_headers = self._pending_headers, b''
                self.sock.sendall(pending)

    response_class._deferring_headers = False
    response_class._pending_headers = b''
    response_class.send_headers = send_headers
    response_class._emit_body = emit_body
    response_class.write = write
    response_class._joins_headers_and_body = True
    return True


def _join_headers_and_body():
    try:
        from gunicorn.http.wsgi import Response
    except ImportError:
        return
    send_headers_with_the_body(Response)


_join_headers_and_body()


def _green():
    """True in a master whose threads eventlet patched (socketio's
    ``-k eventlet`` worker class patches the master when it is imported)."""
    try:
        from eventlet.patcher import is_monkey_patched
    except ImportError:
        return False
    return is_monkey_patched('thread')


class _YieldingSignalQueue:
    """gunicorn's master waits for signals on a queue made before eventlet
    patched threading: a blocking get() there would freeze every green
    thread of the master (the registration refresh among them). This one
    polls the real queue with green sleeps instead. Tied to gunicorn 25's
    ``Arbiter.SIG_QUEUE``, the version socketio pins."""

    def __init__(self, native):
        self._native = native

    def put_nowait(self, item):
        self._native.put_nowait(item)

    def get_nowait(self):
        return self._native.get_nowait()

    def get(self, block=True, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._native.get_nowait()
            except queue.Empty:
                if not block or (deadline is not None
                                 and time.monotonic() >= deadline):
                    raise
                time.sleep(0.05)


def _service_config():
    """The running service's Flask config, built in the master from the
    service's own config module (the app itself loads in the workers)."""
    from flask import Config

    import config as service_config  # the service folder's config.py

    from .config import select
    from .service import resolve_identity

    config = Config(os.getcwd())
    config.from_object(select(service_config.config))
    resolve_identity(config)
    return config


def when_ready(server):
    global _registration
    from .etcd_client import EtcdClient
    from .registration import registration_from_config

    if not logging.getLogger().handlers:     # the master's own log lines
        logging.basicConfig(level=logging.INFO, format='[%(asctime)s] '
                            '[%(process)d] [%(levelname)s] %(name)s: %(message)s')
    config = _service_config()
    if not config.get('ETCD') or not config.get('SERVICE_ADDRESS'):
        server.log.warning('ETCD or SERVICE_ADDRESS unset: not registering '
                           'this instance with the load balancer')
        return
    if _green() and hasattr(server, 'SIG_QUEUE') \
            and not isinstance(server.SIG_QUEUE, _YieldingSignalQueue):
        server.SIG_QUEUE = _YieldingSignalQueue(server.SIG_QUEUE)
    etcd = EtcdClient(config['ETCD'], timeout=config['ETCD_TIMEOUT'])
    _registration = registration_from_config(etcd, config).start()
    server.log.info('registering %s (%s) at %s', config['INSTANCE_NAME'],
                    config['SERVICE_VERSION'], config['SERVICE_ADDRESS'])
    _deregister_before_stopping(server, signal.SIGTERM)


def _deregister_before_stopping(server, signum):
    gunicorn_handler = signal.getsignal(signum)

    def drain_then_stop():
        _registration.stop()
        time.sleep(DRAIN_GRACE)
        gunicorn_handler(signum, None)

    def handler(sig, frame):
        signal.signal(signum, gunicorn_handler)   # a second TERM: at once
        if _green():    # no thread start from inside eventlet's hub
            import eventlet
            eventlet.spawn_n(drain_then_stop)
        else:
            threading.Thread(target=drain_then_stop, daemon=True).start()

    signal.signal(signum, handler)


def worker_exit(server, worker):
    """A worker stops: let the app end its background work."""
    app = getattr(worker, 'wsgi', None)
    platform = getattr(app, 'extensions', {}).get('microflack')
    if platform is not None:
        platform.shutdown()


def on_exit(server):
    if _registration is not None:
        _registration.stop()
