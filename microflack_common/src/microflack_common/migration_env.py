"""The Alembic environment of every service's migrations: each service's
``migrations/env.py`` only calls :func:`run_migrations`.

The database is the Flask app's (through Flask-Migrate), the schema its
models'. Online, the migrations run on a connection of the app's engine;
offline (``--sql``), they print SQL for its URL.
"""
import logging
import os
from logging.config import fileConfig

from alembic import context
from flask import current_app

logger = logging.getLogger('alembic.env')


def _migrate():
    return current_app.extensions['migrate']


def _target_metadata():
    db = _migrate().db
    # Flask-SQLAlchemy 3 keeps one metadata per bind; the default is None.
    return db.metadatas[None] if hasattr(db, 'metadatas') else db.metadata


def _skip_empty_revision(migration_context, revision, directives):
    """``flask db migrate`` writes no revision when the models match the
    schema already."""
    if getattr(context.config.cmd_opts, 'autogenerate', False) \
            and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info('No changes in schema detected.')


def run_migrations():
    config = context.config
    # Logging is set up already when the app runs this (create_app does it,
    # so does pytest); alembic.ini's would silence the loggers that exist.
    if not logging.getLogger().handlers and config.config_file_name \
            and os.path.exists(config.config_file_name):
        fileConfig(config.config_file_name)
    engine = _migrate().db.engine
    if context.is_offline_mode():
        url = engine.url.render_as_string(hide_password=False)
        context.configure(url=url, target_metadata=_target_metadata(),
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    options = dict(_migrate().configure_args)
    if options.get('process_revision_directives') is None:
        options['process_revision_directives'] = _skip_empty_revision
    with engine.connect() as connection:
        context.configure(connection=connection,
                          target_metadata=_target_metadata(), **options)
        with context.begin_transaction():
            context.run_migrations()
