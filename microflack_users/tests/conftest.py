"""One app and one database for the whole session (the schema comes from
the migrations), emptied before each test, with fakes for etcd, the other
services and the pushes.

TEST_DATABASE_URL picks the database (in-memory SQLite by default).
"""
import time

import pytest
import sqlalchemy as sa

import models
import tasks
from app import create_app
from config import TestConfig
from microflack_common.testing import (
    ApiClient,
    FakeEtcd,
    FakeServiceClient,
    RecordingPusher,
    empty_tables,
    make_token,
    migrate_test_database,
    reset_fakes,
)
from microflack_common.utils import timestamp
from models import User, db


class SessionTestConfig(TestConfig):
    # The app outlives each test: a revocation check must not be answered
    # from a cache that an earlier test filled for an identical token.
    REVOCATION_CACHE_SECONDS = 0


@pytest.fixture(scope='session')
def app():
    app = create_app(SessionTestConfig, etcd=FakeEtcd(),
                     http=FakeServiceClient(), pusher=RecordingPusher())
    with app.app_context():
        migrate_test_database(db)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def clean_state(app):
    """Empty tables (alembic_version stays), registry and recorded pushes."""
    with app.app_context():
        empty_tables(db)
    reset_fakes(app)


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
def add_user(app, pusher):
    """Store a user directly (any column may be given); returns its id.
    The insert's push is not kept."""
    def add(nickname, password='dog', **columns):
        with app.app_context():
            user = User(nickname=nickname, **columns)
            user.set_password(password)
            db.session.add(user)
            db.session.commit()
            user_id = user.id
        pusher.pushes.clear()
        return user_id
    return add


@pytest.fixture
def token(app):
    def make(user_id, expires_in=3600):
        return make_token(app, user_id, expires_in)
    return make


@pytest.fixture
def rows(app):
    """Every stored user row as a dict, password hash included."""
    def read():
        with app.app_context():
            table = User.__table__
            result = db.session.execute(sa.select(table).order_by(table.c.id))
            return [dict(row._mapping) for row in result]
    return read


class Clock:
    def __init__(self, now):
        self.now = now


@pytest.fixture
def clock(monkeypatch):
    """Freezes the time read when users are marked seen or swept (column
    defaults keep the real clock)."""
    clock = Clock(timestamp())
    monkeypatch.setattr(models, 'timestamp', lambda: clock.now)
    monkeypatch.setattr(tasks, 'timestamp', lambda: clock.now)
    return clock


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met in time')
        time.sleep(0.01)


@pytest.fixture
def now():
    return timestamp()


@pytest.fixture
def settings(app, monkeypatch):
    """``settings(NAME=value, ...)`` changes the app's config for one test."""
    def change(**values):
        for name, value in values.items():
            monkeypatch.setitem(app.config, name, value)
    return change
