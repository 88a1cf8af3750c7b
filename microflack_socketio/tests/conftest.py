import pytest

from app import create_app
from config import TestConfig
from microflack_common.testing import ApiClient, FakeEtcd


@pytest.fixture
def app():
    return create_app(TestConfig, etcd=FakeEtcd())


@pytest.fixture
def client(app):
    return ApiClient(app)
