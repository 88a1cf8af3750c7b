import pytest

from microflack_common.testing import ApiClient, FakeEtcd, FakeServiceClient
from microflack_ui.app import create_app
from microflack_ui.config import TestConfig

pytest_plugins = ['microflack_common.testing.plugin']


def ui_app(socketio):
    """The ui with Socket.IO on (its default) or off (the client polls)."""
    class Config(TestConfig):
        UI_SOCKETIO = socketio
    return create_app(Config, etcd=FakeEtcd(), http=FakeServiceClient())


@pytest.fixture
def app():
    return ui_app(socketio=True)


@pytest.fixture
def polling_client():
    return ApiClient(ui_app(socketio=False))
