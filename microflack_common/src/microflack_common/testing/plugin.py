"""The pytest fixtures every service's suite shares. A suite loads them
with ``pytest_plugins = ['microflack_common.testing.plugin']`` in its
``tests/conftest.py`` and defines there what is its own: the ``app``
fixture (and, for a database service, ``clean_state``: see
:func:`.database.database_app` and :func:`.database.clean_database_app`).

The fixtures here reach the app's collaborators through
``app.extensions['microflack']``, so a test gets the very fake the app
uses."""
import os
import socket
import uuid

import pytest

from ..utils import timestamp
from .client import ApiClient, make_token
from .servers import EtcdServer


@pytest.fixture
def client(app):
    return ApiClient(app)


@pytest.fixture
def etcd(app):
    """The registry the app was given (a FakeEtcd in unit tests)."""
    return app.extensions['microflack'].etcd


@pytest.fixture
def http(app):
    """The inter-service client the app was given."""
    return app.extensions['microflack'].http


@pytest.fixture
def pusher(app):
    """The pusher the app was given (a RecordingPusher in unit tests)."""
    return app.extensions['microflack'].pusher


@pytest.fixture
def token(app):
    """``token(user_id=1, expires_in=3600)``: a token the app accepts."""
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
def now():
    return timestamp()


@pytest.fixture(scope='session')
def etcd_url(tmp_path_factory):
    """A private etcd on 127.0.0.1 for this test session."""
    try:
        server = EtcdServer(tmp_path_factory.mktemp('etcd')).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()


@pytest.fixture(scope='session')
def redis_address():
    """host:port of the Redis the test command started (or found)."""
    address = os.environ.get('TEST_REDIS', '127.0.0.1:6379')
    host, port = address.rsplit(':', 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        pytest.fail(f'no Redis at {address}: the test command starts one')
    return address


@pytest.fixture
def channel():
    """A pushes channel of this test's own: the listeners and messages it
    counts are its own, whatever else shares the Redis (a platform running
    on this host listens on the default channel)."""
    return f'microflack-test-{uuid.uuid4().hex}'
