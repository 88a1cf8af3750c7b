"""The ui service: serves the single-page chat client (page, JS and CSS)."""
from flask import Flask

from config import config
from microflack_common import config as common_config
from microflack_common.service import init_service


def create_app(config_class=None, **platform_parts):
    app = Flask(__name__)
    app.config.from_object(config_class or common_config.select(config))
    init_service(app, **platform_parts)

    from views import ui
    app.register_blueprint(ui)
    return app
