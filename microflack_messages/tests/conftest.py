"""One app and one database for the whole session (the schema comes from
the migrations), emptied before each test, with fakes for etcd and the
pushes, and real HTTP servers on 127.0.0.1 for the links to point at.

TEST_DATABASE_URL picks the database (in-memory SQLite by default).
"""
import ipaddress

import pytest
import sqlalchemy as sa
import urllib3.util.connection
from flask_migrate import upgrade

import tasks
from app import create_app
from config import TestConfig
from microflack_common.testing import (
    ApiClient,
    FakeEtcd,
    FakeServiceClient,
    RecordingPusher,
    make_token,
)
from microflack_common.utils import timestamp
from models import Message, db
from webserver import WebServer


class SessionTestConfig(TestConfig):
    # The app outlives each test: a revocation check must not be answered
    # from a cache that an earlier test filled for an identical token.
    REVOCATION_CACHE_SECONDS = 0


@pytest.fixture(scope='session')
def app():
    app = create_app(SessionTestConfig, etcd=FakeEtcd(),
                     http=FakeServiceClient(), pusher=RecordingPusher())
    with app.app_context():
        # A test database that persists may hold an earlier run's tables:
        # drop them all so that the schema really comes from the migrations.
        leftovers = sa.MetaData()
        leftovers.reflect(bind=db.engine)
        leftovers.drop_all(bind=db.engine)
        upgrade()
    yield app
    tasks.shutdown(app=app)
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def clean_state(app, loopback_only):
    """Empty table, registry and recorded pushes; no task left running
    (waited for before the safety net below and any setting is undone)."""
    with app.app_context():
        db.session.execute(sa.delete(Message))
        db.session.commit()
    platform = app.extensions['microflack']
    platform.etcd.keys.clear()
    platform.etcd.down = False
    platform.pusher.pushes.clear()
    yield
    assert tasks.wait_for_background(10, app=app), 'a task did not finish'


@pytest.fixture
def loopback_only(monkeypatch):
    """Safety net: any connection the link fetcher tries to open to an
    address outside 127.0.0.0/8 or ::1 fails the test instead."""
    real = urllib3.util.connection.create_connection
    refused = []

    def guarded(address, *args, **kwargs):
        if not ipaddress.ip_address(address[0].strip('[]')).is_loopback:
            refused.append(address)
            raise AssertionError(f'a test tried to reach {address}')
        return real(address, *args, **kwargs)
    monkeypatch.setattr(urllib3.util.connection, 'create_connection', guarded)
    yield
    assert refused == []


@pytest.fixture
def etcd(app):
    return app.extensions['microflack'].etcd


@pytest.fixture
def pusher(app):
    return app.extensions['microflack'].pusher


@pytest.fixture
def client(app):
    return ApiClient(app)


@pytest.fixture
def token(app):
    def make(user_id=1, expires_in=3600):
        return make_token(app, user_id, expires_in)
    return make


@pytest.fixture
def settings(app, monkeypatch):
    """``settings(NAME=value, ...)`` changes the app's config for one test."""
    def change(**values):
        for name, value in values.items():
            monkeypatch.setitem(app.config, name, value)
    return change


@pytest.fixture
def private_links(settings):
    """The test servers are on 127.0.0.1: let the fetcher reach them."""
    settings(ALLOW_PRIVATE_LINKS=True)


@pytest.fixture
def web():
    server = WebServer()
    yield server
    server.close()


@pytest.fixture
def add_message(app, pusher):
    """Store a message directly (any column may be given); returns its id.
    The insert's push is not kept."""
    def add(source='hi', html=None, user_id=1, **columns):
        with app.app_context():
            message = Message(source=source, html=html or source,
                              user_id=user_id, **columns)
            db.session.add(message)
            db.session.commit()
            message_id = message.id
        pusher.pushes.clear()
        return message_id
    return add


@pytest.fixture
def rows(app):
    """Every stored message as a dict, by id."""
    def read():
        with app.app_context():
            table = Message.__table__
            result = db.session.execute(sa.select(table).order_by(table.c.id))
            return [dict(row._mapping) for row in result]
    return read


@pytest.fixture
def settle(app):
    """Wait until the background tasks are done."""
    def wait(timeout=10):
        assert tasks.wait_for_background(timeout, app=app)
    return wait


@pytest.fixture
def now():
    return timestamp()
