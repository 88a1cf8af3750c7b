"""The users service: registration, profiles, logins and who is online."""
from pathlib import Path

from flask import Flask

from microflack_common import config as common_config
from microflack_common.database import init_database
from microflack_common.service import init_service

from .config import config
from .models import db
from .seed import seed_users_command

MIGRATIONS = str(Path(__file__).parent.parent / 'migrations')


def create_app(config_class=None, migrations=True, **platform_parts):
    """The app; ``migrations=False`` (what gunicorn serves) leaves out the
    migration commands and Alembic, which only ``boot.sh`` needs."""
    app = Flask(__name__)
    app.config.from_object(config_class or common_config.select(config))
    platform = init_service(app, **platform_parts)
    init_database(app, db)
    if migrations:
        from flask_migrate import Migrate
        Migrate(app, db, directory=MIGRATIONS)

    from .api import record_token_use, users
    app.register_blueprint(users, url_prefix='/api/users')
    platform.on_token_verified(record_token_use)
    # Maintenance: fill the table for benchmarks and tests.
    app.cli.add_command(seed_users_command)
    return app
