"""ServiceClient against real HTTP servers on loopback."""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from microflack_common.service_client import ServiceClient


class Server:
    """Answers from a script of statuses, recording what it received."""

    def __init__(self, statuses, delay=0):
        self.statuses = list(statuses)
        self.received = []
        self.delay = delay
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length)
                server.received.append((self.command, self.path,
                                        dict(self.headers), body))
                time.sleep(server.delay)
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.end_headers()
                self.wfile.write(b'{"status": %d}' % status)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(statuses=(), delay=0):
        servers.append(Server(statuses, delay))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


def test_relative_urls_go_to_lb_with_token(server_factory):
    server = server_factory()
    client = ServiceClient(server.url)
    rv = client.put('/api/users/me', token='abc')
    assert rv.status_code == 200
    method, path, headers, _ = server.received[0]
    assert (method, path) == ('PUT', '/api/users/me')
    assert headers['Authorization'] == 'Bearer abc'


def test_answers_are_not_asked_compressed(server_factory):
    server = server_factory()
    ServiceClient(server.url).get('/api/users/me')
    _, _, headers, _ = server.received[0]
    assert headers['Accept-Encoding'] == 'identity'


def test_retries_503_for_every_method(server_factory):
    server = server_factory([503, 503])
    rv = ServiceClient(server.url, backoff_factor=0.01).post(
        '/api/messages', json={'source': 'x'})
    assert rv.status_code == 200
    assert len(server.received) == 3


def test_502_retried_for_get_not_post(server_factory):
    server = server_factory([502])
    assert ServiceClient(server.url, backoff_factor=0.01).get(
        '/x').status_code == 200
    server = server_factory([502])
    assert ServiceClient(server.url, backoff_factor=0.01).post(
        '/x').status_code == 502
    assert len(server.received) == 1


def test_gives_up_after_retries(server_factory):
    server = server_factory([503] * 10)
    rv = ServiceClient(server.url, retries=2, backoff_factor=0.01).get('/x')
    assert rv.status_code == 503
    assert len(server.received) == 3


def test_other_errors_not_retried(server_factory):
    server = server_factory([500, 401])
    assert ServiceClient(server.url).get('/x').status_code == 500
    assert len(server.received) == 1


def test_connection_refused_raises_after_retries():
    from microflack_common.testing import free_port
    client = ServiceClient(f'http://127.0.0.1:{free_port()}', retries=2,
                           backoff_factor=0.01)
    start = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        client.get('/x')
    assert time.monotonic() - start < 5


def test_read_timeout_bounds_the_wait(server_factory):
    server = server_factory(delay=2)
    client = ServiceClient(server.url, read_timeout=0.3)
    start = time.monotonic()
    with pytest.raises(requests.Timeout):
        client.get('/slow')
    assert time.monotonic() - start < 1.5


def test_relative_url_without_lb():
    with pytest.raises(RuntimeError, match='LB'):
        ServiceClient(None).get('/api/users')
