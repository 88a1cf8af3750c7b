"""The messages service: chat messages rendered from markdown, with link
previews fetched in the background."""
from pathlib import Path

from flask import Flask

from microflack_common import config as common_config
from microflack_common.database import init_database
from microflack_common.service import init_service

from . import tasks
from .config import config
from .models import db
from .seed import seed_messages_command

MIGRATIONS = str(Path(__file__).parent.parent / 'migrations')


def create_app(config_class=None, migrations=True, **platform_parts):
    """The app; ``migrations=False`` (what gunicorn serves) leaves out the
    migration commands and Alembic, which only ``boot.sh`` needs."""
    app = Flask(__name__)
    app.config.from_object(config_class or common_config.select(config))
    init_service(app, **platform_parts)
    init_database(app, db)
    if migrations:
        from flask_migrate import Migrate
        Migrate(app, db, directory=MIGRATIONS)
    tasks.init_app(app)

    from .api import messages
    app.register_blueprint(messages, url_prefix='/api/messages')
    # Maintenance: fill the table for benchmarks and tests.
    app.cli.add_command(seed_messages_command)
    return app
