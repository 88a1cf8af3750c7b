import pytest

from microflack_common.testing import FakeEtcd, FakeServiceClient
from microflack_tokens.app import create_app
from microflack_tokens.config import TestConfig

pytest_plugins = ['microflack_common.testing.plugin']


@pytest.fixture
def app():
    return create_app(TestConfig, etcd=FakeEtcd(), http=FakeServiceClient())
