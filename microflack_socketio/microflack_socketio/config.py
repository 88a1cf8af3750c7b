"""Settings of the socketio service (shared ones come from microflack_common)."""
from pathlib import Path
from urllib.parse import urlsplit

from microflack_common import config as common

# VERSION is in the service folder, this package's parent.
VERSION = (Path(__file__).parent.parent / 'VERSION').read_text().strip()


def allowed_origins(value, variable='CORS_ALLOWED_ORIGINS'):
    """The origins browsers may connect from, for Flask-SocketIO.

    Unset: the same origin only (None), which is all MicroFlack needs since
    the UI is served through the same load balancer. ``*``: any origin.
    Otherwise a comma-separated list of ``scheme://host[:port]``.
    """
    if not value or not value.strip():
        return None
    if value.strip() == '*':
        return '*'
    origins = []
    for item in value.split(','):
        origin = item.strip().rstrip('/')
        if not origin:
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ('http', 'https') or not parts.netloc \
                or parts.path or parts.query or parts.fragment:
            raise common.ConfigError(
                f'{variable} has a malformed origin {item.strip()!r}: '
                f'expected scheme://host[:port], several separated by commas')
        origins.append(origin)
    return origins or None


class Config:
    SERVICE_NAME = 'socketio'
    VERSION = VERSION
    # Also the path the Socket.IO server answers on.
    SERVICE_URL = common.env_str('SERVICE_URL', '/socket.io')
    # Sticky sessions: a client's polling and WebSocket requests must reach
    # the same instance.
    LB_ALGORITHM = common.env_str('LB_ALGORITHM', 'source')
    # An eventlet worker holds thousands of connections (each WebSocket is
    # one for its lifetime): no per-instance limit at the load balancer.
    LB_SERVER_MAXCONN = common.env_int('LB_SERVER_MAXCONN', 0)
    # A polling request waits up to the ping interval (25 s) for news.
    LB_TIMEOUT_SERVER = common.env_int('LB_TIMEOUT_SERVER', 60)
    # Flask-SocketIO starts each connection's session from Flask's.
    COOKIE_SESSIONS = True
    CORS_ALLOWED_ORIGINS = allowed_origins(
        common.env_str('CORS_ALLOWED_ORIGINS'))
    # eventlet, threading, ...; unset: Flask-SocketIO picks (threading
    # under `flask run`, eventlet under gunicorn's eventlet worker).
    SOCKETIO_ASYNC_MODE = common.env_str('SOCKETIO_ASYNC_MODE')
    # On SIGTERM a worker drops every client connection at once (clients
    # reconnect to another instance), then gives the requests and relays
    # in flight this long (seconds) before it exits. Keep it below
    # gunicorn's GRACEFUL_TIMEOUT.
    SOCKETIO_STOP_TIMEOUT = common.env_float('SOCKETIO_STOP_TIMEOUT', 2)


class DevConfig(Config, common.DevConfig):
    pass


class TestConfig(Config, common.TestConfig):
    SOCKETIO_ASYNC_MODE = 'threading'
    CORS_ALLOWED_ORIGINS = None


class ProdConfig(Config, common.ProdConfig):
    REQUIRED_SETTINGS = common.ProdConfig.REQUIRED_SETTINGS + ('LB', 'REDIS')
    SOCKETIO_ASYNC_MODE = common.env_str('SOCKETIO_ASYNC_MODE', 'eventlet')


config = {'dev': DevConfig, 'test': TestConfig, 'prod': ProdConfig}
