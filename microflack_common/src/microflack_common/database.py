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

Reads that need no transaction (``read_connection()``, ``PreparedRead``)
use a second pool of autocommit connections: a plain connection would end
every read with a ROLLBACK, one more round trip to the server than the
SELECT itself.
"""
import time

from flask import current_app
from sqlalchemy import create_engine, event, exc

# Connections older than this (seconds) are replaced at their next checkout.
POOL_RECYCLE = 3600


def engine_options(database_url):
    """``SQLALCHEMY_ENGINE_OPTIONS`` for a database URL."""
    if database_url.startswith(('mysql', 'mariadb')):
        return {'pool_recycle': POOL_RECYCLE}
    return {}


def init_database(app, db):
    """``db.init_app(app)``; on a server database, ping the pools' idle
    connections and add the pool of ``read_connection()`` (SQLite has no
    connection to lose, and its in-memory databases are one per engine,
    so reads there share the one engine)."""
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    reader = engine
    if engine.dialect.name in ('mysql', 'mariadb'):
        reader = create_engine(
            engine.url, isolation_level='AUTOCOMMIT',
            skip_autocommit_rollback=True,
            **app.config['SQLALCHEMY_ENGINE_OPTIONS'])
        for pool_owner in (engine, reader):
            ping_idle_connections(pool_owner, app.config['DB_PING_AFTER_IDLE'])
    app.extensions['microflack_reader'] = reader


def read_connection():
    """A connection for reads that need no transaction: each statement
    sees what is committed when it runs, and nothing is rolled back when
    the connection goes back to the pool. Use it in a ``with`` block."""
    return current_app.extensions['microflack_reader'].connect()


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


class PreparedRead:
    """A SELECT run straight on a DBAPI connection of the reader pool, for
    a hot path: on a small query, SQLAlchemy's Connection and Result cost
    about as much as the driver itself. The statement is compiled once per
    dialect; a connection that the server dropped is discarded, as
    SQLAlchemy would."""

    def __init__(self, statement):
        self.statement = statement
        self._compiled = {}     # dialect name -> (sql, positional bind names)

    def _sql(self, dialect):
        if dialect.name not in self._compiled:
            compiled = self.statement.compile(dialect=dialect)
            self._compiled[dialect.name] = (
                compiled.string,
                compiled.positiontup if compiled.positional else None)
        return self._compiled[dialect.name]

    def scalars(self, **params):
        """The first column of every row, for these bind parameters."""
        engine = current_app.extensions['microflack_reader']
        sql, names = self._sql(engine.dialect)
        if names is not None:
            params = [params[name] for name in names]
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, params)
                return [row[0] for row in cursor.fetchall()]
            except engine.dialect.loaded_dbapi.Error as error:
                if engine.dialect.is_disconnect(error, connection, cursor):
                    connection.invalidate(error)
                raise
            finally:
                cursor.close()
        finally:
            connection.close()
