"""The ui service: serves the single-page chat client (page, JS and CSS)."""
from pathlib import Path

from flask import Flask

from microflack_common import config as common_config
from microflack_common.service import init_service

from .config import config

# The page's files stay in the service folder (the package's parent), where
# the build puts the front-end libraries (static/vendor/).
SERVICE_DIR = Path(__file__).parent.parent


def create_app(config_class=None, **platform_parts):
    app = Flask(__name__, static_folder=SERVICE_DIR / 'static',
                template_folder=SERVICE_DIR / 'templates')
    app.config.from_object(config_class or common_config.select(config))
    init_service(app, **platform_parts)

    from .views import ui
    app.register_blueprint(ui)
    return app
