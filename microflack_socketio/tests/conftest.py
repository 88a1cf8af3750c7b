"""Fixtures: an app whose relays go to a FakeServiceClient, Flask-SocketIO
test clients connected to it; for the integration tests the real Redis the
test command starts (TEST_REDIS, 127.0.0.1:6379 by default), a private
etcd, and helpers to serve an app on 127.0.0.1."""
import pytest

from microflack_common.testing import FakeEtcd, FakeResponse, FakeServiceClient
from microflack_socketio.app import create_app
from microflack_socketio.config import TestConfig

pytest_plugins = ['microflack_common.testing.plugin']

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
