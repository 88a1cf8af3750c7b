"""Fixtures for the common package's tests: a real etcd and Redis on
loopback for the integration tests, and small Flask apps for the rest."""
import pytest
from flask import Flask

from microflack_common import config as common_config
from microflack_common.service import init_service
from microflack_common.testing import FakeEtcd, RecordingPusher

pytest_plugins = ['microflack_common.testing.plugin']


class AppConfig(common_config.TestConfig):
    SERVICE_NAME = 'sample'


@pytest.fixture
def fake_etcd():
    return FakeEtcd()


@pytest.fixture
def app(fake_etcd):
    app = Flask('sample')
    app.config.from_object(AppConfig)
    init_service(app, etcd=fake_etcd, pusher=RecordingPusher())
    return app
