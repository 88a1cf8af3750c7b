"""The healthcheck command of the Docker images, against real HTTP servers
on 127.0.0.1."""
import http.server
import subprocess
import sys
import threading

import pytest

from microflack_common.healthcheck import check
from microflack_common.testing import free_port


def serve(status):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == '/health' else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def healthy():
    server = serve(200)
    yield f'127.0.0.1:{server.server_port}'
    server.shutdown()


@pytest.fixture
def failing():
    server = serve(503)
    yield f'127.0.0.1:{server.server_port}'
    server.shutdown()


def run(address):
    return subprocess.run(
        [sys.executable, '-m', 'microflack_common.healthcheck'],
        env={'SERVICE_ADDRESS': address}, capture_output=True, text=True,
        timeout=30)


def test_healthy_instance_passes(healthy):
    assert check(healthy)
    result = run(healthy)
    assert result.returncode == 0, result.stderr


def test_unhealthy_instance_fails(failing):
    assert not check(failing)
    result = run(failing)
    assert result.returncode == 1
    assert f'http://{failing}/health' in result.stderr


def test_nothing_listening_fails():
    address = f'127.0.0.1:{free_port()}'
    assert not check(address, timeout=1)
    assert run(address).returncode == 1


def test_malformed_address_fails_cleanly():
    result = run('not an address')
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr

