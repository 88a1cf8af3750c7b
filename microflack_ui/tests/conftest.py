import pytest

from app import create_app
from config import TestConfig
from microflack_common.testing import ApiClient, FakeEtcd, FakeServiceClient


@pytest.fixture
def etcd():
    return FakeEtcd()


@pytest.fixture
def http():
    return FakeServiceClient()


@pytest.fixture
def app(etcd, http):
    return create_app(TestConfig, etcd=etcd, http=http)


@pytest.fixture
def client(app):
    return ApiClient(app)


@pytest.fixture
def socketio_client(etcd, http):
    """A client of the ui configured with UI_SOCKETIO on."""
    class SocketIOConfig(TestConfig):
        UI_SOCKETIO = True
    return ApiClient(create_app(SocketIOConfig, etcd=etcd, http=http))
