"""The tokens service: issues, checks and revokes JSON Web Tokens."""
from flask import Flask

from microflack_common import config as common_config
from microflack_common.service import init_service

from .config import config


def create_app(config_class=None, **platform_parts):
    app = Flask(__name__)
    app.config.from_object(config_class or common_config.select(config))
    init_service(app, **platform_parts)

    from .api import tokens
    app.register_blueprint(tokens, url_prefix='/api/tokens')
    return app
