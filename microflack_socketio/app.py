"""The socketio service: relays the browsers' Socket.IO events to the
users and messages APIs and fans out model pushes (events come with the
real-time issue; for now the app only answers its health check)."""
from flask import Flask

from config import config
from microflack_common import config as common_config
from microflack_common.service import init_service


def create_app(config_class=None, **platform_parts):
    app = Flask(__name__)
    app.config.from_object(config_class or common_config.select(config))
    init_service(app, **platform_parts)
    return app
