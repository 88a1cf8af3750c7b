"""A lock on a whole database, for work one process at a time may do
(schema migrations).

``database_lock(engine, timeout)`` is a context manager that waits at most
``timeout`` seconds for the lock and raises :class:`LockTimeout` otherwise:

- MariaDB/MySQL: a named lock (``GET_LOCK``) held by a connection of its
  own. Named locks are server-wide, so the name is derived from the
  database's name; the server frees the lock when the holder's connection
  ends, so a crashed holder never leaves it taken.
- SQLite: an exclusive ``flock`` on a file beside the database file; the
  kernel frees it when the holder dies. An in-memory database belongs to
  one process: there is nothing to lock.

Any other database is refused (:class:`LockUnsupported`) rather than
migrated unguarded.
"""
import fcntl
import hashlib
import logging
import time
from contextlib import contextmanager

import sqlalchemy as sa

log = logging.getLogger(__name__)

# How often a waiter tries the SQLite file lock again (flock has no timeout).
POLL_INTERVAL = 0.1
# MySQL refuses longer lock names (MariaDB does not mind).
MYSQL_MAX_LOCK_NAME = 64


class LockTimeout(RuntimeError):
    """The lock was not had in time; the message says which lock."""


class LockUnsupported(RuntimeError):
    """No database-wide lock is known for this kind of database."""


def mysql_lock_name(database, purpose='migrate'):
    """The name of the server-wide lock guarding ``database``."""
    name = f'microflack.{purpose}.{database}'
    if len(name) > MYSQL_MAX_LOCK_NAME:
        digest = hashlib.sha256(database.encode()).hexdigest()[:40]
        name = f'microflack.{purpose}.{digest}'
    return name


def sqlite_lock_path(database, purpose='migrate'):
    """The file whose flock guards the SQLite file ``database``."""
    return f'{database}.{purpose}.lock'


def is_in_memory(url):
    database = url.database
    return database in (None, '', ':memory:') or 'mode=memory' in str(url)


@contextmanager
def database_lock(engine, timeout, purpose='migrate'):
    """Hold the database-wide lock of ``engine``'s database; yields a
    description of the lock (for messages), None when nothing is locked."""
    url = engine.url
    backend = url.get_backend_name()
    if backend in ('mysql', 'mariadb'):
        with _mysql_lock(url, timeout, purpose) as name:
            yield name
    elif backend == 'sqlite':
        if is_in_memory(url):
            yield None
        else:
            with _file_lock(sqlite_lock_path(url.database, purpose),
                            timeout) as path:
                yield path
    else:
        raise LockUnsupported(f'no database-wide lock for {backend} '
                              'databases (MariaDB, MySQL, SQLite only)')


@contextmanager
def _mysql_lock(url, timeout, purpose):
    # A connection outside the app's pool: the lock lives exactly as long
    # as this connection, which the migration itself never uses or closes.
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            database = connection.exec_driver_sql(
                'SELECT DATABASE()').scalar() or url.database or ''
            name = mysql_lock_name(database, purpose)
            if not _get_lock(connection, name, 0):
                log.info('waiting up to %g s for lock %s, held by another '
                         'process', timeout, name)
                if not _get_lock(connection, name, timeout):
                    raise LockTimeout(
                        f'could not get lock {name} within {timeout:g} s: '
                        'another process still holds it')
            try:
                yield name
            finally:
                _release_lock(connection, name)
    finally:
        engine.dispose()


def _get_lock(connection, name, timeout):
    got = connection.execute(sa.text('SELECT GET_LOCK(:name, :timeout)'),
                             {'name': name, 'timeout': timeout}).scalar()
    if got is None:     # an error on the server's side, not a timeout
        raise RuntimeError(f'the database could not take lock {name}')
    return got == 1


def _release_lock(connection, name):
    try:
        connection.execute(sa.text('SELECT RELEASE_LOCK(:name)'),
                           {'name': name})
    except sa.exc.DBAPIError as exc:
        # Closing the connection frees the lock anyway; what went wrong
        # before (if anything) is the error worth seeing.
        log.warning('could not release lock %s (%s); closing its '
                    'connection frees it', name, exc.orig)


@contextmanager
def _file_lock(path, timeout):
    # Opened for appending (never truncates) and never removed: a process
    # waiting on a removed file would lock a file nobody else opens.
    with open(path, 'a') as lock_file:
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f'could not get lock {path} within {timeout:g} s: '
                        'another process still holds it') from None
                if not waiting:
                    log.info('waiting up to %g s for lock %s, held by '
                             'another process', timeout, path)
                    waiting = True
                time.sleep(POLL_INTERVAL)
        try:
            yield path
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
