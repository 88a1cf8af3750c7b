"""gunicorn settings and hooks every service runs with, through its own
``gunicorn_config`` module, which re-exports them and hands them the
service's config classes::

    # microflack_users/microflack_users/gunicorn_config.py
    from microflack_common.gunicorn_config import *  # noqa: F403
    from microflack_common.gunicorn_config import serve

    # Not imported as `config`: gunicorn would read that as its setting.
    from .config import config as service_configs

    serve(service_configs)

    # boot.sh
    gunicorn -c python:microflack_users.gunicorn_config wsgi:app

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

# What a service's gunicorn_config re-exports with ``import *``: the
# settings and hooks gunicorn reads from the module it is given.
__all__ = ['bind', 'workers', 'worker_class', 'threads', 'graceful_timeout',
           'keepalive', 'timeout', 'accesslog', 'control_socket_disable',
           'when_ready', 'post_worker_init', 'worker_exit', 'on_exit']

# Settings gunicorn reads from this module (command-line flags win).
# Where it listens: SERVICE_BIND (e.g. 0.0.0.0:<port>), else the address
# it registers (SERVICE_ADDRESS).
bind = (os.environ.get('SERVICE_BIND')
        or os.environ.get('SERVICE_ADDRESS', '127.0.0.1:5000'))
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
# The service's config classes by FLASK_CONFIG name, given by serve().
_service_configs = None


def serve(configs):
    """Hand the hooks the service's config classes (its ``config``
    mapping: ``{'dev': DevConfig, 'prod': ProdConfig, ...}``), from which
    the master registers the instance.

    Given as an object rather than imported by name (``import config``
    resolved by the working directory) or named in an environment variable:
    the shared code knows no service's modules, and the service's
    ``gunicorn_config`` says in Python which config it runs with."""
    global _service_configs
    _service_configs = configs


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
    config classes given to :func:`serve` (the app itself loads in the
    workers)."""
    from flask import Config

    from .config import ConfigError, select
    from .service import resolve_identity

    configs = _service_configs
    if configs is None:
        configs = _flat_release_configs()
    if configs is None:
        raise ConfigError(
            'no service config: run gunicorn with the service\'s own '
            'settings (-c python:microflack_<service>.gunicorn_config), '
            'which call microflack_common.gunicorn_config.serve(config)')
    config = Config(os.getcwd())
    config.from_object(select(configs))
    resolve_identity(config)
    return config


def _flat_release_configs():
    """The config classes of a release from before the service packages,
    whose boot.sh runs ``-c python:microflack_common.gunicorn_config`` from
    a folder of flat modules: its ``config.py``, or None.

    Only for such releases, built ``mfbuild --from`` an older commit with
    today's microflack_common wheel (the wheel keeps its version, and
    ``mfupgrade`` rolls from them); a current service calls :func:`serve`.
    Said in the log, so that it is seen when it is no longer needed."""
    if not os.path.isfile('config.py'):
        return None
    import importlib
    configs = importlib.import_module('config').config
    logger.warning('no serve() call: reading the config of a release from '
                   'before the service packages from %s/config.py',
                   os.getcwd())
    return configs


def when_ready(server):
    global _registration
    from .etcd_client import EtcdClient
    from .gunicorn_patches import json_error_answers, yield_signal_queue
    from .registration import registration_from_config

    if not logging.getLogger().handlers:     # the master's own log lines
        logging.basicConfig(level=logging.INFO, format='[%(asctime)s] '
                            '[%(process)d] [%(levelname)s] %(name)s: %(message)s')
    yield_signal_queue(server, green=_green())
    # Before the workers are forked: each has it.
    json_error_answers()
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
