"""Wiring the shared parts into a service's Flask app.

``init_service(app)`` is called by every service's ``create_app``. It checks
the settings, builds the registry client, the revocation list, the
inter-service HTTP client and the model pusher, installs the JSON error
handlers, logging, ``GET /health`` and the ``flask db-upgrade-locked``
command (:mod:`.migrate`), turns off cookie sessions where the service has
no use for them, and keeps them in
``app.extensions['microflack']`` (see :func:`shared_parts`).
"""
# The idna codec is found by an import on its first use; done first in
# several request threads at once, that import can fail for good ("unknown
# encoding: idna"), so it is loaded here, in the thread that builds the app.
import encodings.idna  # noqa: F401
import logging
import socket

from flask import Blueprint, current_app, jsonify
from flask.sessions import SessionInterface

from .config import check_required
from .errors import register_error_handlers
from .etcd_client import EtcdClient
from .events import ModelPusher
from .migrate import db_upgrade_locked_command
from .revocation import RevocationList
from .service_client import ServiceClient


class SharedParts:
    """Per-app handles on the platform's shared parts: the registry, the
    revocation list, the client for other services, the pusher."""

    def __init__(self, etcd, revocations, http, pusher):
        self.etcd = etcd
        self.revocations = revocations
        self.http = http
        self.pusher = pusher
        self.token_callbacks = []   # called with the claims of each token
        self.worker_start_callbacks = []
        self.shutdown_callbacks = []

    def on_token_verified(self, callback):
        self.token_callbacks.append(callback)
        return callback

    def on_worker_start(self, callback):
        """Run ``callback(worker)`` in a gunicorn worker once it has loaded
        the app (gunicorn's post_worker_init), with gunicorn's Worker."""
        self.worker_start_callbacks.append(callback)
        return callback

    def worker_started(self, worker):
        for callback in self.worker_start_callbacks:
            callback(worker)

    def on_shutdown(self, callback):
        """Run ``callback()`` when the serving process stops (gunicorn's
        worker_exit): stop background threads, finish queued work."""
        self.shutdown_callbacks.append(callback)
        return callback

    def shutdown(self):
        for callback in self.shutdown_callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - the others must still run
                logging.getLogger(__name__).exception('shutdown callback '
                                                      'failed')


def shared_parts():
    """The current app's :class:`SharedParts`."""
    return current_app.extensions['microflack']


health = Blueprint('health', __name__)


@health.route('/health')
def health_check():
    config = current_app.config
    return jsonify(status='ok', service=config['SERVICE_NAME'],
                   version=config['SERVICE_VERSION'],
                   instance=config['INSTANCE_NAME'])


def resolve_identity(config):
    """Fill in the defaults of SPEC section 2 that derive from others."""
    name = config['SERVICE_NAME']
    if not config.get('SERVICE_URL'):
        config['SERVICE_URL'] = f'/api/{name}'
    if not config.get('SERVICE_VERSION'):
        config['SERVICE_VERSION'] = config.get('VERSION') or 'dev'
    if not config.get('INSTANCE_NAME'):
        host_id = socket.gethostname().split('.')[0]
        config['INSTANCE_NAME'] = \
            f"{name}_v{config['SERVICE_VERSION']}_{host_id}"


class NoCookieSessions(SessionInterface):
    """No session cookie is read or written: a REST service knows its
    caller from the token of each request. Flask would otherwise build a
    signing serializer and look for the cookie on every request."""

    def open_session(self, app, request):
        return None     # Flask then hands out its NullSession

    def save_session(self, app, session, response):
        pass


def setup_logging(app):
    """Log to stderr, where the platform collects every instance's output."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if app.debug else logging.INFO,
            format='%(asctime)s %(levelname)s %(name)s: %(message)s')


def init_service(app, etcd=None, http=None, pusher=None):
    """Attach the platform parts to ``app``; arguments override (tests)."""
    check_required(app.config)
    resolve_identity(app.config)
    setup_logging(app)
    config = app.config
    if etcd is None and config.get('ETCD'):
        etcd = EtcdClient(config['ETCD'], timeout=config['ETCD_TIMEOUT'])
    # A registry that cannot be watched (the tests' FakeEtcd) is asked
    # about each token instead of mirrored.
    revocations = RevocationList(
        etcd, cache_seconds=config['REVOCATION_CACHE_SECONDS'],
        mirror=hasattr(etcd, 'watch_prefix')) if etcd is not None else None
    if revocations is not None and revocations.mirror is not None:
        # Now, in the serving process (gunicorn loads the app in each
        # worker): revocations made before an etcd outage must be known.
        revocations.mirror.start()
    if http is None:
        http = ServiceClient(
            config['LB'], connect_timeout=config['HTTP_CONNECT_TIMEOUT'],
            read_timeout=config['HTTP_READ_TIMEOUT'],
            retries=config['HTTP_RETRIES'])
    if pusher is None:
        pusher = ModelPusher.from_redis(config.get('REDIS'),
                                        config.get('REDIS_CHANNEL'))
    app.extensions['microflack'] = SharedParts(etcd, revocations, http, pusher)
    if revocations is not None and revocations.mirror is not None:
        app.extensions['microflack'].on_shutdown(revocations.mirror.stop)
    # Flask 3 reads the key order from its JSON provider, not the config.
    app.json.sort_keys = config['JSON_SORT_KEYS']
    if not config['COOKIE_SESSIONS']:
        app.session_interface = NoCookieSessions()
    register_error_handlers(app)
    app.register_blueprint(health)
    # Every service gets it; it refuses to run where there is no database.
    app.cli.add_command(db_upgrade_locked_command)
    return app.extensions['microflack']
