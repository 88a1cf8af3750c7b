"""``flask db-upgrade-locked``: bring the service's database schema to the
head of its migrations, one instance at a time.

Every database service's ``boot.sh`` runs it before gunicorn, so the new
code never serves an older schema. Instances starting together (a roll, a
host reboot) would otherwise race the same ``ALTER TABLE``: here the first
one takes the database-wide lock (:mod:`.db_lock`) and migrates, the others
wait for it, then find the schema current and have nothing to do. Waiting
is bounded by ``MIGRATION_LOCK_TIMEOUT`` (or ``--timeout``); past it the
command fails with a one-line error and a non-zero status.

One log line says what was done: ``database at revision X, nothing to do``
or ``upgraded from X to Y``. A database at a revision this code does not
know was migrated by a newer release (an older one is starting again
beside it, or after a roll back): its schema is left alone, since every
release's migrations only add what older code ignores.
"""
import logging

import click
from flask import current_app
from flask.cli import with_appcontext

log = logging.getLogger(__name__)


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date; the message says why."""


def describe(revisions):
    return ', '.join(revisions) if revisions else 'base (empty)'


def upgrade_locked(timeout=None):
    """Upgrade the current app's database to its migrations' head under the
    database lock; logs and returns one line saying what was done."""
    # Imported here, as in the helpers below: services without a database
    # have neither alembic nor SQLAlchemy, yet register the command.
    from alembic.util import CommandError

    from .db_lock import LockTimeout, LockUnsupported, database_lock

    migrate = current_app.extensions.get('migrate')
    if migrate is None:
        raise MigrationError('this service has no database migrations '
                             '(Flask-Migrate is not set up)')
    if timeout is None:
        timeout = current_app.config['MIGRATION_LOCK_TIMEOUT']
    if timeout < 0:
        raise MigrationError(f'the lock timeout must not be negative, '
                             f'got {timeout:g}')
    engine = migrate.db.engine
    try:
        with database_lock(engine, timeout):
            level, line = _upgrade(engine, migrate.migrate.get_config())
    except LockTimeout as exc:
        raise MigrationError(
            f'migration lock not available: {exc}; is another instance '
            'still migrating? (MIGRATION_LOCK_TIMEOUT or --timeout: how '
            'long to wait)') from None
    except (LockUnsupported, CommandError) as exc:
        raise MigrationError(str(exc)) from None
    log.log(level, line)
    return line


def _upgrade(engine, config):
    """With the lock held: migrate if needed; returns (log level, line)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(config)
    heads = script.get_heads()
    # Read only now: whoever held the lock before may just have migrated.
    before = _current_revisions(engine)
    if _unknown_revisions(script, before):
        return logging.WARNING, (
            f'database at revision {describe(before)}, which this release '
            f'does not know (its head is {describe(heads)}): migrated by a '
            'newer release, left as it is')
    if set(before) == set(heads):
        return logging.INFO, \
            f'database at revision {describe(before)}, nothing to do'
    command.upgrade(config, 'heads')
    return logging.INFO, (f'upgraded from {describe(before)} to '
                          f'{describe(_current_revisions(engine))}')


def _current_revisions(engine):
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_heads()


def _unknown_revisions(script, revisions):
    from alembic.util import CommandError

    unknown = []
    for revision in revisions:
        try:
            script.get_revision(revision)
        except CommandError:
            unknown.append(revision)
    return unknown


@click.command('db-upgrade-locked')
@click.option('--timeout', type=click.FloatRange(min=0), default=None,
              help='Seconds to wait for another instance\'s migration '
                   '(default: MIGRATION_LOCK_TIMEOUT, 60).')
@with_appcontext
def db_upgrade_locked_command(timeout):
    """Upgrade the database to the latest migration, holding a
    database-wide lock so that concurrent instances migrate only once."""
    try:
        upgrade_locked(timeout)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
