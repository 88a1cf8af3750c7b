"""One app and one database for the whole session (the schema comes from
the migrations), emptied before each test, with fakes for etcd, the other
services and the pushes.

TEST_DATABASE_URL picks the database (in-memory SQLite by default).
"""
import pytest

from microflack_common.testing import (
    clean_database_app,
    database_app,
    stored_rows,
)
from microflack_common.utils import timestamp
from microflack_users import models, tasks
from microflack_users.app import create_app
from microflack_users.config import TestConfig
from microflack_users.models import User, db

pytest_plugins = ['microflack_common.testing.plugin']


@pytest.fixture(scope='session')
def app():
    yield from database_app(create_app, TestConfig, db)


@pytest.fixture(autouse=True)
def clean_state(app):
    """Empty tables (alembic_version stays), registry and recorded pushes."""
    clean_database_app(app, db)


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
def rows(app):
    """Every stored user row as a dict, password hash included."""
    return lambda: stored_rows(app, db, User)


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
