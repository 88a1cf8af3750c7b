"""Fixtures: an app whose relays go to a FakeServiceClient, Flask-SocketIO
test clients connected to it; for the integration tests the real Redis the
test command starts (TEST_REDIS, 127.0.0.1:6379 by default), a private
etcd, and helpers to serve an app on 127.0.0.1."""
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

from app import create_app
from config import TestConfig
from microflack_common.testing import (
    EtcdServer,
    FakeEtcd,
    FakeResponse,
    FakeServiceClient,
)

USERS_ME = '/api/users/me'
MESSAGES = '/api/messages'


def answer(status, body=None):
    """A FakeServiceClient route answering ``status``."""
    def handler(**kwargs):
        return FakeResponse(status, body)
    return handler


@pytest.fixture
def http():
    return FakeServiceClient({
        ('PUT', USERS_ME): answer(204),
        ('DELETE', USERS_ME): answer(204),
        ('POST', MESSAGES): answer(201, {'id': 1}),
    })


@pytest.fixture
def app(http):
    return create_app(TestConfig, etcd=FakeEtcd(), http=http)


@pytest.fixture
def socketio(app):
    return app.extensions['socketio']


@pytest.fixture
def connect(app, socketio):
    """Connects one more Socket.IO test client to the app."""
    clients = []

    def new_client():
        client = socketio.test_client(app, flask_test_client=app.test_client())
        assert client.is_connected()
        clients.append(client)
        return client
    yield new_client
    for client in clients:
        if client.is_connected():
            client.disconnect()


def wait_for(condition, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('condition not met in time')
        time.sleep(interval)


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
    """A pushes channel of this test's own: the listeners and pushes it
    counts are its own (a platform running on this host listens on the
    default channel of the same Redis)."""
    return f'microflack-test-{uuid.uuid4().hex}'


@contextmanager
def serving(app):
    """Serve ``app`` (threading async mode) on 127.0.0.1; yields its URL."""
    server = make_server('127.0.0.1', 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_port}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope='session')
def etcd_url(tmp_path_factory):
    """A private etcd (v2 API on) on 127.0.0.1 for this test session."""
    try:
        server = EtcdServer(tmp_path_factory.mktemp('etcd')).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()
