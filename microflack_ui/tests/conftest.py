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
    """The ui with its default settings (Socket.IO mode)."""
    class DefaultConfig(TestConfig):
        UI_SOCKETIO = True
    return create_app(DefaultConfig, etcd=etcd, http=http)


@pytest.fixture
def client(app):
    return ApiClient(app)


@pytest.fixture
def polling_app(etcd, http):
    """The ui configured with UI_SOCKETIO=0 (the client polls)."""
    class PollingConfig(TestConfig):
        UI_SOCKETIO = False
    return create_app(PollingConfig, etcd=etcd, http=http)


@pytest.fixture
def polling_client(polling_app):
    return ApiClient(polling_app)
