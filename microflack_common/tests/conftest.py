"""Fixtures for the common package's tests: a real etcd and Redis on
loopback for the integration tests, and small Flask apps for the rest."""
import os
import socket

import pytest
from flask import Flask

from microflack_common import config as common_config
from microflack_common.service import init_service
from microflack_common.testing import (
    EtcdServer,
    FakeEtcd,
    RecordingPusher,
)


@pytest.fixture(scope='session')
def etcd_url(tmp_path_factory):
    """A private etcd (v2 API on) for this test session."""
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
