import pytest

from app import create_app
from config import TestConfig
from microflack_common.testing import FakeEtcd, FakeServiceClient

pytest_plugins = ['microflack_common.testing.plugin']


@pytest.fixture
def app():
    return create_app(TestConfig, etcd=FakeEtcd(), http=FakeServiceClient())
