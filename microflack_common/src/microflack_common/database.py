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

Reads that need no transaction (``PreparedRead``) use a second pool, of
autocommit connections: a connection in a transaction would end every read
with a ROLLBACK, one more round trip to the server than the SELECT itself.
It is a bare pool of DBAPI connections: those reads need nothing else of
an engine.

A connection can also be lost in use: the server restarts, or an operator
kills it. A statement that fails so is run again on a fresh connection
where nothing can happen twice: a read of ``PreparedRead`` at once, a view
decorated with :func:`retry_on_lost_connection` as a whole when no COMMIT
was sent during it. Otherwise (and when the database cannot be reached at
all) the client gets 503 with ``Retry-After``, as JSON; the load balancer
sends an idempotent request that got a 503 to another instance.
"""
import functools
import logging
import time

from flask import current_app, g, has_app_context
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool
from werkzeug.exceptions import ServiceUnavailable

from .errors import http_error, unexpected_error

logger = logging.getLogger(__name__)

# Connections older than this (seconds) are replaced at their next checkout.
POOL_RECYCLE = 3600
# What a client is told to wait before trying again when the database
# cannot answer (seconds).
RETRY_AFTER = 1
LOOPBACK_HOSTS = ('127.0.0.1', 'localhost', '::1')


def engine_options(database_url):
    """``SQLALCHEMY_ENGINE_OPTIONS`` for a database URL."""
    if not database_url.startswith(('mysql', 'mariadb')):
        return {}
    options = {'pool_recycle': POOL_RECYCLE}
    try:
        url = make_url(database_url)
    except (exc.ArgumentError, ValueError):
        return options      # create_engine will say what is wrong with it
    if url.host in LOOPBACK_HOSTS \
            and not any(name.startswith('ssl') for name in url.query):
        # PyMySQL prefers TLS: every connection builds an SSL context from
        # the system's CA bundle, 0.8 MiB of each worker's memory per
        # connection, even for a server on this host, where TLS protects
        # nothing (and MariaDB has it off by default). A remote server, or
        # a URL with ssl settings, keeps TLS.
        options['connect_args'] = {'ssl_disabled': True}
    return options


def init_database(app, db):
    """``db.init_app(app)``; on a server database, ping the pools' idle
    connections and add the reads' autocommit pool. (SQLite has no
    connection to lose, and an in-memory database lives in one pool, so
    reads there use the engine's.)"""
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    reads = None        # SQLite: the engine's pool, whichever it is then
    if engine.dialect.name in ('mysql', 'mariadb'):
        reads = autocommit_pool(
            engine, app.config['SQLALCHEMY_ENGINE_OPTIONS'].get('connect_args'))
        for pool in (engine.pool, reads):
            ping_idle_connections(pool, engine.dialect,
                                  app.config['DB_PING_AFTER_IDLE'])
    app.extensions['microflack_reads'] = (reads, engine)
    event.listen(engine, 'commit', note_commit)
    app.register_error_handler(exc.DBAPIError, database_error)
    # Registered after Flask-SQLAlchemy's, so it runs first (teardowns run
    # in reverse order): the session that one closes has no transaction
    # left whose rollback could fail on a lost connection.
    app.teardown_appcontext(end_session_quietly)


def is_lost_connection(error):
    """True for a database error raised because the connection to the
    server was lost (SQLAlchemy then invalidated it)."""
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


def note_commit(connection):
    """Engine event, before a COMMIT is sent: from now on this request's
    work may be stored, and running it again could store it twice."""
    if has_app_context():
        g.microflack_db_committed = True


def end_session_quietly(error=None):
    """Roll the request's session back, logging (not raising) a failure:
    on a lost connection the rollback itself can fail, and an exception in
    a teardown becomes the WSGI server's HTML error page."""
    # The request's Session, not the scoped_session proxy: invalidate()
    # is only on the Session.
    session = current_app.extensions['sqlalchemy'].session()
    try:
        session.rollback()
    except exc.SQLAlchemyError as rollback_error:
        logger.warning('rollback failed (%s); the connection is dropped',
                       getattr(rollback_error, 'orig', None) or rollback_error)
        session.invalidate()


def database_error(error):
    """503 JSON with Retry-After when the database could not answer (a
    lost connection, a server that cannot be reached, a lock timeout);
    any other database error is a bug: 500 JSON."""
    end_session_quietly()
    if not (is_lost_connection(error)
            or isinstance(error, exc.OperationalError)):
        return unexpected_error(error)
    logger.warning('database unavailable: %s', error.orig or error)
    response = http_error(ServiceUnavailable(
        'the database is unavailable, try again'))
    response.headers['Retry-After'] = str(RETRY_AFTER)
    return response


def retry_on_lost_connection(view):
    """Run a view once more, on a fresh connection, when the database
    connection was lost under it and no COMMIT was sent: the first run then
    stored nothing. Put it above the authentication decorators, whose
    callbacks may read the database too."""

    @functools.wraps(view)
    def run(*args, **kwargs):
        g.microflack_db_committed = False
        try:
            return view(*args, **kwargs)
        except exc.DBAPIError as error:
            if not is_lost_connection(error) or g.microflack_db_committed:
                raise
            logger.warning('database connection lost (%s); running %s '
                           'again on a new one', error.orig, view.__name__)
            end_session_quietly()
        return view(*args, **kwargs)
    return run


def autocommit_pool(engine, connect_args=None):
    """A pool of autocommit DBAPI connections to the engine's database
    (``connect_args`` as the engine's): a connection returned to it has no
    transaction to roll back."""
    dialect = engine.dialect
    args, kwargs = dialect.create_connect_args(engine.url)
    kwargs = {**kwargs, **(connect_args or {}), 'autocommit': True}
    return QueuePool(lambda: dialect.connect(*args, **kwargs),
                     recycle=POOL_RECYCLE, reset_on_return=None)


def ping_idle_connections(pool, dialect, after_idle):
    """Ping a pooled connection at checkout when it was idle for longer
    than ``after_idle`` seconds (0: always, as ``pool_pre_ping``); a dead
    one is discarded and the pool hands out a fresh connection instead."""

    @event.listens_for(pool, 'checkin')
    def remember_when_returned(dbapi_connection, record):
        record.info['returned_at'] = time.monotonic()

    @event.listens_for(pool, 'checkout')
    def ping_if_idle(dbapi_connection, record, proxy):
        returned_at = record.info.get('returned_at')
        if returned_at is None or time.monotonic() - returned_at < after_idle:
            return      # just connected, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: reconnect
            raise exc.DisconnectionError(str(error)) from error


class PreparedRead:
    """A SELECT that needs no transaction, run straight on a DBAPI
    connection of the reads' pool, for a hot path: on a small query,
    SQLAlchemy's Connection and Result cost about as much as the driver
    itself. The statement is compiled once per dialect; a connection that
    the server dropped is discarded, as SQLAlchemy would."""

    def __init__(self, statement):
        self.statement = statement
        # dialect name -> (sql, positional bind names, the values of the
        # statement's own binds, such as SQLite's OFFSET 0 after a LIMIT)
        self._compiled = {}

    def _sql(self, dialect):
        if dialect.name not in self._compiled:
            compiled = self.statement.compile(dialect=dialect)
            self._compiled[dialect.name] = (
                compiled.string,
                compiled.positiontup if compiled.positional else None,
                {name: value for name, value in compiled.params.items()
                 if value is not None})
        return self._compiled[dialect.name]

    def rows(self, **params):
        """Every row, as a tuple, for these bind parameters."""
        reads, engine = current_app.extensions['microflack_reads']
        # The engine's pool is looked up each time: dispose() replaces it.
        pool, dialect = reads or engine.pool, engine.dialect
        sql, names, own_params = self._sql(dialect)
        if own_params:
            params = {**own_params, **params}
        if names is not None:
            params = [params[name] for name in names]
        try:
            return self._run(pool, dialect, sql, params)
        except exc.DBAPIError as error:
            if not is_lost_connection(error):
                raise
            # A SELECT in autocommit: running it again changes nothing.
            logger.warning('database connection lost (%s); reading again '
                           'on a new one', error.orig)
        return self._run(pool, dialect, sql, params)

    @staticmethod
    def _run(pool, dialect, sql, params):
        """Execute on a pooled connection; a driver error comes out as
        SQLAlchemy's (a lost connection invalidated), as from the ORM."""
        try:
            connection = pool.connect()
        except dialect.loaded_dbapi.Error as error:
            raise exc.DBAPIError.instance(
                sql, params, error, dialect.loaded_dbapi.Error,
                dialect=dialect) from error
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            return cursor.fetchall()
        except dialect.loaded_dbapi.Error as error:
            lost = dialect.is_disconnect(error, connection, cursor)
            if lost:
                connection.invalidate(error)
            raise exc.DBAPIError.instance(
                sql, params, error, dialect.loaded_dbapi.Error,
                connection_invalidated=lost, dialect=dialect) from error
        finally:
            if cursor is not None:
                cursor.close()
            connection.close()

    def scalars(self, **params):
        """The first column of every row."""
        return [row[0] for row in self.rows(**params)]
