"""Fixtures for the common package's tests: a real etcd and Redis on
loopback for the integration tests, and small Flask apps for the rest."""
import os
import shutil
import socket
import subprocess
import time

import pytest
import urllib3
from flask import Flask

from microflack_common import config as common_config
from microflack_common.service import init_service
from microflack_common.testing import FakeEtcd, RecordingPusher


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f'nothing listens on 127.0.0.1:{port}')


@pytest.fixture(scope='session')
def etcd_url(tmp_path_factory):
    """A private etcd (v2 API on) for this test session."""
    binary = shutil.which('etcd')
    if binary is None:
        pytest.fail('etcd is not installed (the test command installs '
                    'etcd-server)')
    client, peer = free_port(), free_port()
    data_dir = tmp_path_factory.mktemp('etcd')
    process = subprocess.Popen(
        [binary, '--enable-v2=true', '--name', 'test',
         '--data-dir', str(data_dir),
         '--listen-client-urls', f'http://127.0.0.1:{client}',
         '--advertise-client-urls', f'http://127.0.0.1:{client}',
         '--listen-peer-urls', f'http://127.0.0.1:{peer}',
         '--initial-advertise-peer-urls', f'http://127.0.0.1:{peer}',
         '--initial-cluster', f'test=http://127.0.0.1:{peer}'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{client}'
    http = urllib3.PoolManager()
    deadline = time.monotonic() + 15
    while True:
        try:
            if http.request('GET', url + '/v2/keys/', timeout=1).status \
                    == 200:
                break
        except urllib3.exceptions.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail('etcd did not start')
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


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
