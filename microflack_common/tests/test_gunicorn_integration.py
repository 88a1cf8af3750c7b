"""A real gunicorn instance with the shared settings registers itself in a
real etcd, and on SIGTERM leaves the registry before it stops serving."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import urllib3

import microflack_common
from microflack_common.etcd_client import EtcdClient
from microflack_common.testing import free_port, wait_until

# A service laid out like the real ones: its modules in a package, its
# gunicorn settings handing the shared hooks its config.
SERVICE = {
    'sample/__init__.py': '',
    'sample/gunicorn_config.py': '''
        from microflack_common.gunicorn_config import *  # noqa: F403
        from microflack_common.gunicorn_config import serve

        from .config import config as service_configs

        serve(service_configs)
    ''',
    'sample/config.py': '''
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
    (tmp_path / 'sample').mkdir()
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
           'DRAIN_GRACE': '0.5',
           # This microflack_common, whatever the cwd (PYTHONPATH=src).
           'PYTHONPATH': str(Path(microflack_common.__file__).parent.parent)}
    gunicorn = Path(sys.executable).parent / 'gunicorn'
    process = subprocess.Popen(
        [str(gunicorn), '-c', 'python:sample.gunicorn_config', 'wsgi:app'],
        # From the service folder, as boot.sh runs it: gunicorn imports the
        # -c module before it applies --chdir.
        cwd=service_dir, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        key = '/services/sample/upstream/sample_1'
        assert wait_until(lambda: etcd.get_value(key), 10)
        assert etcd.get_value(key) == f'127.0.0.1:{port}'
        assert etcd.get_value('/services/sample/location') == '/api/sample'
        assert etcd.get_value('/services/sample/backend/balance') == \
            'roundrobin'
        http = urllib3.PoolManager()
        url = f'http://127.0.0.1:{port}/api/sample'
        answer = http.request('GET', url)
        assert answer.json() == {'hello': 'world'}
        assert 'gunicorn' not in answer.headers.get('Server', '')
        assert_gunicorns_errors_are_json(port)

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
    assert 'applied JSON error answers to gunicorn' in output


def raw_answer(port, data):
    with socket.create_connection(('127.0.0.1', port), timeout=5) as sock:
        sock.sendall(data)
        answer = b''
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b'\r\n\r\n')
    return head.decode('latin-1'), body


def assert_gunicorns_errors_are_json(port):
    """Issue 19, finding 8: what gunicorn answers itself (a request it
    cannot parse) was an HTML page naming gunicorn."""
    for request, status in [
            (b'GET /' + b'a' * 5000 + b' HTTP/1.1\r\nHost: x\r\n\r\n',
             414),
            (b'NOT A REQUEST\r\n\r\n', 400),
            (b'GET / HTTP/1.1\r\nHost: x\r\nX: ' + b'y' * 9000 +
             b'\r\n\r\n', 431)]:
        head, body = raw_answer(port, request)
        assert head.split()[1] == str(status), head
        assert 'Content-Type: application/json' in head, head
        assert 'gunicorn' not in head.lower(), head
        assert list(json.loads(body)) == ['error'], body



def test_the_master_needs_the_service_config(tmp_path, monkeypatch, caplog):
    """The shared hooks import no module of a current service: without
    serve() the master says what is missing instead of registering nothing
    (or, for a release from before the service packages, reads the
    config.py of its folder and says so)."""
    from flask import Config

    from microflack_common import config as common
    from microflack_common import gunicorn_config

    monkeypatch.setattr(gunicorn_config, '_service_configs', None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('FLASK_CONFIG', 'test')
    with pytest.raises(common.ConfigError, match='serve'):
        gunicorn_config._service_config()

    class Sample(common.TestConfig):
        SERVICE_NAME = 'sample'

    gunicorn_config.serve({'test': Sample})
    config = gunicorn_config._service_config()
    assert isinstance(config, Config)
    assert config['SERVICE_NAME'] == 'sample'
    assert config['SERVICE_URL'] == '/api/sample'

    monkeypatch.setattr(gunicorn_config, '_service_configs', None)
    (tmp_path / 'config.py').write_text(textwrap.dedent('''
        from microflack_common import config as common

        class TestConfig(common.TestConfig):
            SERVICE_NAME = 'flat'

        config = {'test': TestConfig}
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'config', raising=False)
    try:
        assert gunicorn_config._service_config()['SERVICE_NAME'] == 'flat'
    finally:
        sys.modules.pop('config', None)
    assert 'before the service packages' in caplog.text
