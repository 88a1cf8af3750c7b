"""A real gunicorn instance with the shared settings registers itself in a
real etcd, and on SIGTERM leaves the registry before it stops serving."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import urllib3

from microflack_common.etcd_client import EtcdClient
from microflack_common.testing import free_port, wait_until

SERVICE = {
    'config.py': '''
        from microflack_common import config as common

        class Config:
            SERVICE_NAME = 'sample'

        class ProdConfig(Config, common.ProdConfig):
            pass

        config = {'prod': ProdConfig}
    ''',
    'wsgi.py': '''
        from flask import Flask

        app = Flask(__name__)

        @app.route('/api/sample')
        def hello():
            return {'hello': 'world'}
    ''',
}


@pytest.fixture
def service_dir(tmp_path):
    for name, text in SERVICE.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_registers_and_deregisters_on_sigterm(service_dir, etcd_url):
    port = free_port()
    etcd = EtcdClient(etcd_url)
    env = {**os.environ, 'FLASK_CONFIG': 'prod', 'ETCD': etcd_url,
           'SECRET_KEY': 's', 'JWT_SECRET_KEY': 'j',
           'SERVICE_ADDRESS': f'127.0.0.1:{port}',
           'INSTANCE_NAME': 'sample_1', 'SERVICE_VERSION': '1.2',
           'DRAIN_GRACE': '0.5'}
    gunicorn = Path(sys.executable).parent / 'gunicorn'
    process = subprocess.Popen(
        [str(gunicorn), '-c', 'python:microflack_common.gunicorn_config',
         '--chdir', str(service_dir), 'wsgi:app'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        key = '/services/sample/upstream/sample_1'
        assert wait_until(lambda: etcd.get_value(key), 10)
        assert etcd.get_value(key) == f'127.0.0.1:{port}'
        assert etcd.get_value('/services/sample/location') == '/api/sample'
        assert etcd.get_value('/services/sample/backend/balance') == \
            'roundrobin'
        http = urllib3.PoolManager()
        url = f'http://127.0.0.1:{port}/api/sample'
        assert http.request('GET', url).json() == {'hello': 'world'}

        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert wait_until(lambda: etcd.get_value(key) is None, 2)
        # Still serving while the load balancer catches up.
        assert http.request('GET', url, retries=False).status == 200
        assert process.wait(10) == 0
        assert time.monotonic() - stopped_at < 5
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read()
    assert 'registering sample_1' in output
    # Said once at start, whatever it decided (gunicorn_patches).
    assert 'the yielding signal queue not applied to gunicorn ' in output
