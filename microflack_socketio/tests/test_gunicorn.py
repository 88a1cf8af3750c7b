"""The service as production runs it: gunicorn 25 with one eventlet worker
and the shared settings, WebSocket clients (python-socketio), a small fake
users/messages API on 127.0.0.1 as the load balancer, the real Redis and a
private etcd."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import socketio as socketio_lib
import urllib3

from microflack_common.etcd_client import EtcdClient
from microflack_common.events import ModelPusher
from microflack_common.testing import free_port, wait_until

SERVICE_DIR = Path(__file__).resolve().parent.parent
GOOD, SLOW = 'good.token', 'slow.token'


class FakeApi(BaseHTTPRequestHandler):
    """Users and messages as the relays see them: GOOD and SLOW (answered
    after a second) are valid tokens, any other gets 401."""

    def _answer(self):
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        token = (self.headers.get('Authorization') or '')[len('Bearer '):]
        self.server.requests.put((self.command, self.path, token,
                                  json.loads(body) if body else None))
        if token == SLOW:
            time.sleep(1)
        status = {'POST': 201}.get(self.command, 204) \
            if token in (GOOD, SLOW) else 401
        self.send_response(status)
        self.send_header('Content-Length', '0')
        self.end_headers()

    do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = ThreadingHTTPServer(('127.0.0.1', 0), FakeApi)
    server.daemon_threads = True
    server.requests = queue.Queue()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f'http://127.0.0.1:{server.server_port}'
    yield server
    server.shutdown()
    server.server_close()


def api_requests(api, timeout=0.0):
    """The requests the fake API got (waiting up to ``timeout`` for one)."""
    found = []
    try:
        found.append(api.requests.get(timeout=timeout) if timeout
                     else api.requests.get_nowait())
        while True:
            found.append(api.requests.get_nowait())
    except queue.Empty:
        pass
    return found


class Gunicorn:
    def __init__(self, port, process, log, etcd_key):
        self.port = port
        self.url = f'http://127.0.0.1:{port}'
        self.process = process
        self.log = log
        self.etcd_key = etcd_key

    def output(self):
        return self.log.read_text()


@pytest.fixture
def gunicorn(api, etcd_url, redis_address, channel, tmp_path):
    """Starts the service with its boot.sh, as mfrun does; stops it."""
    started = []

    def start(register=True, **settings):
        """``register``: with SERVICE_ADDRESS, so the master registers the
        instance in etcd; ``settings``: more environment variables."""
        port = free_port()
        instance = f'socketio_test_{port}'
        env = dict(os.environ)
        for name in ('SERVICE_URL', 'SERVICE_ADDRESS', 'LB_ALGORITHM',
                     'CORS_ALLOWED_ORIGINS', 'SOCKETIO_ASYNC_MODE',
                     'SOCKETIO_STOP_TIMEOUT', 'GRACEFUL_TIMEOUT',
                     'WEB_CONCURRENCY', 'REGISTRATION_TTL',
                     'REGISTRATION_REFRESH'):
            env.pop(name, None)
        env.update({'FLASK_CONFIG': 'prod', 'SECRET_KEY': 's',
                    'JWT_SECRET_KEY': 'j', 'ETCD': etcd_url, 'LB': api.url,
                    'REDIS': redis_address, 'REDIS_CHANNEL': channel,
                    'INSTANCE_NAME': instance,
                    'DRAIN_GRACE': '0.5', 'XDG_RUNTIME_DIR': str(tmp_path)},
                   **settings)
        if register:
            env['SERVICE_ADDRESS'] = f'127.0.0.1:{port}'
        # boot.sh runs: gunicorn -c python:microflack_socketio.gunicorn_config
        #   -k eventlet -w 1 wsgi:app --bind 127.0.0.1:PORT
        env['PATH'] = f'{Path(sys.executable).parent}:{env.get("PATH", "")}'
        log = tmp_path / f'gunicorn-{port}.log'
        with log.open('w') as out:
            process = subprocess.Popen(
                [str(SERVICE_DIR / 'boot.sh'), '--bind', f'127.0.0.1:{port}'],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)     # its own group: see teardown
        server = Gunicorn(port, process, log,
                          f'/services/socketio/upstream/{instance}')
        started.append(server)
        http = urllib3.PoolManager()

        def healthy():
            if process.poll() is not None:
                raise AssertionError('gunicorn exited:\n' + server.output())
            try:
                return http.request('GET', server.url + '/health', timeout=1,
                                    retries=False).status == 200
            except urllib3.exceptions.HTTPError:
                return False
        assert wait_until(healthy, 30, 0.1), (
            'no answer on /health:\n' + server.output())
        return server
    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)     # quick shutdown
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        # An eventlet worker whose master died would live on: end the
        # whole group this test started.
        try:
            os.killpg(server.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Client:
    """A python-socketio client over WebSocket recording its events."""

    def __init__(self, url, transport='websocket'):
        self.events = queue.Queue()
        self.sio = socketio_lib.Client(reconnection=False)
        for name in ('updated_model', 'expired_token', 'disconnect'):
            self.sio.on(name, self._recorder(name))
        self.sio.connect(url, transports=[transport], wait_timeout=10)

    def _recorder(self, name):
        def record(*args):
            self.events.put((name, args, time.monotonic()))
        return record

    def next(self, name, timeout=5, match=lambda args: True):
        deadline = time.monotonic() + timeout
        while True:
            try:
                event, args, at = self.events.get(
                    timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f'no {name} event') from None
            if event == name and match(args):
                return args, at

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()


@pytest.fixture
def clients():
    made = []

    def connect(url, transport='websocket'):
        client = Client(url, transport)
        made.append(client)
        return client
    yield connect
    for client in made:
        client.close()


def test_serves_health_and_socket_io(gunicorn, tmp_path):
    server = gunicorn(register=False)
    http = urllib3.PoolManager()
    rv = http.request('GET', server.url + '/health')
    assert rv.status == 200
    assert rv.json()['service'] == 'socketio'
    rv = http.request('GET', server.url + '/socket.io/?EIO=4&transport=polling')
    assert rv.status == 200
    opened = json.loads(rv.data.decode()[1:])
    assert opened['upgrades'] == ['websocket']
    # gunicorn 25 honours the shared control_socket_disable.
    assert not (tmp_path / 'gunicorn.ctl').exists()
    output = server.output()
    assert 'Using worker: eventlet' in output
    # Said once at start: the patches and reach-ins this service relies on
    # took (gunicorn_patches, engineio_internals).
    for line in ('applied the yielding signal queue to gunicorn 25.',
                 "applied a worker's graceful timeout of 2 s to gunicorn 25.",
                 'applied dropping connections without a close packet to '
                 'python-engineio 4.'):
        assert output.count(line) == 1, line
    assert 'Traceback' not in output


def test_events_over_websocket(gunicorn, api, clients, redis_address,
                               channel):
    server = gunicorn(register=False)
    alice, bob = clients(server.url), clients(server.url)
    assert alice.sio.transport() == 'websocket'

    alice.sio.emit('ping_user', 'bad.token')
    assert alice.next('expired_token')[0] == ()
    assert api_requests(api, 5) == [('PUT', '/api/users/me', 'bad.token',
                                     None)]

    alice.sio.emit('ping_user', GOOD)
    assert api_requests(api, 5) == [('PUT', '/api/users/me', GOOD, None)]
    alice.sio.emit('post_message', ({'source': 'hello *world*!'}, GOOD))
    assert api_requests(api, 5) == [('POST', '/api/messages', GOOD,
                                     {'source': 'hello *world*!'})]

    # A slow relay does not hold up anyone else (green requests).
    bob.sio.emit('ping_user', SLOW)
    api_requests(api, 5)     # the slow one has reached the API
    asked = time.monotonic()
    alice.sio.emit('ping_user', 'other.bad.token')
    _, answered = alice.next('expired_token')
    assert answered - asked < 0.5

    marker = uuid.uuid4().hex
    pusher = ModelPusher.from_redis(redis_address, channel)
    pusher.push('User', {'id': 3, 'marker': marker})
    assert pusher.flush()
    for client in (alice, bob):
        args, _ = client.next(
            'updated_model',
            match=lambda args: args[0]['model'].get('marker') == marker)
        assert args == ({'class': 'User',
                         'model': {'id': 3, 'marker': marker}},)

    api_requests(api, 2)
    alice.close()       # alice's remembered token marks her offline
    assert api_requests(api, 5) == [('DELETE', '/api/users/me', GOOD, None)]
    assert 'Traceback' not in server.output()


def test_sigterm_drops_clients_and_stops_cleanly(gunicorn, api, clients):
    """The worker's part of a stop (the registry's part is the next test)."""
    server = gunicorn(register=False)
    on_websocket = clients(server.url)
    on_polling = clients(server.url, transport='polling')
    for client in (on_websocket, on_polling):
        client.sio.emit('ping_user', GOOD)
    assert len(api_requests(api, 5) + api_requests(api, 5)) == 2

    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for client in (on_websocket, on_polling):
        (reason,), at = client.next('disconnect', timeout=5)
        # Dropped as when an instance dies, so clients reconnect elsewhere
        # (an Engine.IO 'server disconnect' would be final to them).
        assert reason in ('transport error', 'transport close')
        assert at - stopped_at < 1.5
    assert server.process.wait(10) == 0
    assert time.monotonic() - stopped_at < 4.5
    output = server.output()
    assert 'closed 2 client connection(s)' in output
    assert 'Worker exiting' in output      # not killed by the master
    assert 'Traceback' not in output
    # Their users stay online: they are about to reconnect elsewhere.
    assert api_requests(api) == []


def test_registration_lives_on_and_leaves_first_on_sigterm(gunicorn,
                                                           etcd_url):
    """Under the eventlet worker the master, monkey patched by gunicorn,
    still refreshes its registration and deregisters on SIGTERM before the
    workers stop serving."""
    server = gunicorn(REGISTRATION_TTL='3', REGISTRATION_REFRESH='1')
    etcd = EtcdClient(etcd_url)
    assert wait_until(lambda: etcd.get_value(server.etcd_key), 5)
    assert etcd.get_value(server.etcd_key) == f'127.0.0.1:{server.port}'
    assert etcd.get_value('/services/socketio/location') == '/socket.io'
    assert etcd.get_value('/services/socketio/backend/balance') == 'source'
    time.sleep(4.5)             # longer than the TTL: it was refreshed
    assert etcd.get_value(server.etcd_key) == f'127.0.0.1:{server.port}'

    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: etcd.get_value(server.etcd_key) is None, 2)
    http = urllib3.PoolManager()
    rv = http.request('GET', server.url + '/health', retries=False)
    assert rv.status == 200     # still serving while the LB catches up
    assert server.process.wait(10) == 0
    assert time.monotonic() - stopped_at < 5
    assert 'Traceback' not in server.output()
