"""The socketio service: relays the browsers' Socket.IO events to the users
and messages APIs, and broadcasts the model pushes that come through Redis.
No HTTP endpoints of its own besides the shared GET /health."""
from flask import Flask
from flask_socketio import SocketIO

from microflack_common import config as common_config
from microflack_common.events import CHANNEL, redis_url
from microflack_common.service import init_service

from .config import config
from .events import (
    CONNECTIONS,
    Connections,
    follow_user_revocations,
    register_handlers,
)
from .message_queue import RedisQueue


def socketio_options(config):
    """Flask-SocketIO's settings from the app's config."""
    options = {
        'async_mode': config['SOCKETIO_ASYNC_MODE'],
        'path': config['SERVICE_URL'],
        'cors_allowed_origins': config['CORS_ALLOWED_ORIGINS'],
    }
    if config.get('REDIS'):
        # On the channel users and messages publish `updated_model` on.
        options['client_manager'] = RedisQueue(
            redis_url(config['REDIS']), config.get('REDIS_CHANNEL') or CHANNEL)
    return options


def create_app(config_class=None, **platform_parts):
    app = Flask(__name__)
    app.config.from_object(config_class or common_config.select(config))
    init_service(app, **platform_parts)
    # One Socket.IO server per app (tests run several side by side); it
    # wraps app.wsgi_app, so gunicorn serves the Flask app itself.
    socketio = SocketIO(app, **socketio_options(app.config))
    register_handlers(socketio)
    follow_user_revocations(app, socketio)
    app.extensions[CONNECTIONS] = Connections(
        socketio, app.config['SOCKETIO_STOP_TIMEOUT'])
    return app
