"""gunicorn settings and hooks every service runs with::

    gunicorn -c python:microflack_common.gunicorn_config wsgi:app

The gunicorn master registers the instance in etcd once it listens (one
registration per instance, whatever the number of workers, and no extra
process for it), keeps the registration alive from a thread, and on SIGTERM
deregisters first, waits ``DRAIN_GRACE`` seconds for the load balancer to
stop routing new requests here, then lets gunicorn finish the requests in
flight and exit. In a worker, the app's ``on_worker_start`` and
``on_shutdown`` callbacks run once it has loaded and when it exits.

Settings and hooks only: whatever changes gunicorn's internals is in
:mod:`.gunicorn_patches`, applied from a hook here.
"""
import logging
import os
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


def _green():
    """True in a master whose threads eventlet patched (socketio's
    ``-k eventlet`` worker class patches the master when it is imported)."""
    try:
        from eventlet.patcher import is_monkey_patched
    except ImportError:
        return False
    return is_monkey_patched('thread')


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
    from .gunicorn_patches import yield_signal_queue
    from .registration import registration_from_config

    if not logging.getLogger().handlers:     # the master's own log lines
        logging.basicConfig(level=logging.INFO, format='[%(asctime)s] '
                            '[%(process)d] [%(levelname)s] %(name)s: %(message)s')
    yield_signal_queue(server, green=_green())
    config = _service_config()
    if not config.get('ETCD') or not config.get('SERVICE_ADDRESS'):
        server.log.warning('ETCD or SERVICE_ADDRESS unset: not registering '
                           'this instance with the load balancer')
        return
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


def _shared_parts(worker):
    """The SharedParts of the app a worker serves (None for another app)."""
    app = getattr(worker, 'wsgi', None)
    return getattr(app, 'extensions', {}).get('microflack')


def post_worker_init(worker):
    """A worker has loaded the app: let the app hook into it."""
    parts = _shared_parts(worker)
    if parts is not None:
        parts.worker_started(worker)


def worker_exit(server, worker):
    """A worker stops: let the app end its background work."""
    parts = _shared_parts(worker)
    if parts is not None:
        parts.shutdown()


def on_exit(server):
    if _registration is not None:
        _registration.stop()
