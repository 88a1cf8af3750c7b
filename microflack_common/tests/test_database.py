"""Pooled connections are pinged only after they sat idle, and a dead one
is replaced before anybody uses it (SQLite stands in for the server here;
the services' MariaDB runs test it against a real server)."""
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from microflack_common.database import engine_options, ping_idle_connections


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'pool.db'}",
                              poolclass=QueuePool, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


class Pings(list):
    """The connections pinged; the next ping fails if ``failing`` is set."""
    failing = False


@pytest.fixture
def pings(engine, monkeypatch):
    calls = Pings()

    def do_ping(dbapi_connection):
        calls.append(dbapi_connection)
        if calls.failing:
            calls.failing = False
            raise OSError('server has gone away')
        return True
    monkeypatch.setattr(engine.dialect, 'do_ping', do_ping)
    return calls


def dbapi_connection_of(engine):
    with engine.connect() as connection:
        assert connection.exec_driver_sql('SELECT 1').scalar() == 1
        return connection.connection.dbapi_connection


def test_a_connection_used_a_moment_ago_is_not_pinged(engine, pings):
    ping_idle_connections(engine.pool, engine.dialect, after_idle=60)
    first = dbapi_connection_of(engine)
    assert dbapi_connection_of(engine) is first
    assert pings == []


def test_an_idle_connection_is_pinged_before_use(engine, pings):
    ping_idle_connections(engine.pool, engine.dialect, after_idle=0.05)
    first = dbapi_connection_of(engine)     # new: no ping needed
    assert pings == []
    time.sleep(0.1)
    assert dbapi_connection_of(engine) is first
    assert pings == [first]


def test_a_dead_idle_connection_is_replaced(engine, pings):
    ping_idle_connections(engine.pool, engine.dialect, after_idle=0)
    first = dbapi_connection_of(engine)
    pings.failing = True
    replacement = dbapi_connection_of(engine)
    assert replacement is not first
    assert pings == [first]


def test_engine_options():
    """Connections are renewed hourly; a server on this host gets no TLS
    (whose context would cost each connection 0.8 MiB for nothing), a
    remote one, or a URL with ssl settings, keeps PyMySQL's preference."""
    local = {'pool_recycle': 3600, 'connect_args': {'ssl_disabled': True}}
    for url in ('mysql+pymysql://u:p@127.0.0.1/db?charset=utf8mb4',
                'mariadb+pymysql://u:p@localhost/db',
                'mysql+pymysql://u:p@[::1]:3306/db'):
        assert engine_options(url) == local, url
    for url in ('mysql+pymysql://u:p@db.example:3306/db',
                'mysql+pymysql://u:p@mariadb.internal/db',
                'mysql+pymysql://u:p@127.0.0.1/db?ssl_ca=/etc/ca.pem'):
        assert engine_options(url) == {'pool_recycle': 3600}, url
    assert engine_options('mysql+pymysql://u:p@127.0.0.1:port/db') == \
        {'pool_recycle': 3600}
    assert engine_options('sqlite://') == {}
