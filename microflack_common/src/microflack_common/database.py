"""The database engine settings of the services that have one (users,
messages), in one place.

MariaDB drops connections that stay idle for ``wait_timeout`` and forgets
them all when it restarts, so a pooled connection can be dead when a
request takes it. SQLAlchemy's ``pool_pre_ping`` answers that with a round
trip to the server on every checkout, which on a busy instance is a third
of a read's round trips for nothing: the connection was in use a
millisecond ago. Here a connection is pinged only when it has been idle in
the pool for longer than ``DB_PING_AFTER_IDLE`` seconds; one that fails the
ping is replaced before the request sees it. Connections are renewed every
hour anyway (``pool_recycle``), well within MariaDB's default eight hours.
"""
import time

from sqlalchemy import event, exc

# Connections older than this (seconds) are replaced at their next checkout.
POOL_RECYCLE = 3600


def engine_options(database_url):
    """``SQLALCHEMY_ENGINE_OPTIONS`` for a database URL."""
    if database_url.startswith(('mysql', 'mariadb')):
        return {'pool_recycle': POOL_RECYCLE}
    return {}


def init_database(app, db):
    """``db.init_app(app)``, then ping the pool's idle connections (a
    server database only: SQLite has no connection to lose)."""
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name in ('mysql', 'mariadb'):
        ping_idle_connections(engine, app.config['DB_PING_AFTER_IDLE'])


def ping_idle_connections(engine, after_idle):
    """Ping a pooled connection at checkout when it was idle for longer
    than ``after_idle`` seconds (0: always, as ``pool_pre_ping``); a dead
    one is discarded and the pool hands out a fresh connection instead."""

    @event.listens_for(engine, 'checkin')
    def remember_when_returned(dbapi_connection, record):
        record.info['returned_at'] = time.monotonic()

    @event.listens_for(engine, 'checkout')
    def ping_if_idle(dbapi_connection, record, proxy):
        returned_at = record.info.get('returned_at')
        if returned_at is None or time.monotonic() - returned_at < after_idle:
            return      # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: reconnect
            raise exc.DisconnectionError(str(error)) from error
