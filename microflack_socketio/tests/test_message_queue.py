"""`updated_model` pushes through the real Redis: what users and messages
publish (ModelPusher) reaches the clients of every socketio instance.

Flask-SocketIO's test client refuses apps with a message queue, so these
apps are served on 127.0.0.1 and real python-socketio clients connect.
"""
import logging
import queue
import shutil
import subprocess
import time
import uuid

import pytest
import redis as redis_lib
import socketio as socketio_lib

from conftest import USERS_ME, answer
from microflack_common.events import ModelPusher
from microflack_common.testing import FakeEtcd, free_port, serving, wait_until
from microflack_socketio.app import create_app
from microflack_socketio.config import TestConfig


class Client:
    """A python-socketio client that queues the events it receives."""

    def __init__(self, url):
        self.events = queue.Queue()
        self.sio = socketio_lib.Client(reconnection=False)
        for name in ('updated_model', 'expired_token', 'resync'):
            self.sio.on(name, self._recorder(name))
        # Long polling: the development server's WebSocket support is slow
        # to close (the gunicorn test covers WebSocket in production).
        self.sio.connect(url, transports=['polling'], wait_timeout=5)

    def _recorder(self, name):
        def record(*args):
            self.events.put((name, args))
        return record

    def next(self, name, timeout=5, match=lambda args: True):
        """The next ``name`` event whose args ``match`` (others skipped:
        the Redis may be shared)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event, args = self.events.get(
                    timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f'no {name} event') from None
            if event == name and match(args):
                return args

    def received(self, name, match=lambda args: True):
        found = []
        while not self.events.empty():
            event, args = self.events.get_nowait()
            if event == name and match(args):
                found.append(args)
        return found


@pytest.fixture
def make_app(redis_address, channel, http):
    class QueueConfig(TestConfig):
        REDIS = redis_address
        REDIS_CHANNEL = channel

    def make():
        return create_app(QueueConfig, etcd=FakeEtcd(), http=http)
    return make


@pytest.fixture
def redis_client(redis_address):
    host, port = redis_address.rsplit(':', 1)
    client = redis_lib.Redis(host=host, port=int(port))
    yield client
    client.close()


@pytest.fixture
def clients():
    made = []

    def connect(url):
        client = Client(url)
        made.append(client)
        return client
    yield connect
    for client in made:
        client.sio.disconnect()


def listeners(redis_client, channel):
    return dict(redis_client.pubsub_numsub(channel))[channel.encode()]


def marked(marker):
    return lambda args: args[0]['model'].get('marker') == marker


def push(redis_address, channel, class_name, model):
    pusher = ModelPusher.from_redis(redis_address, channel)
    pusher.push(class_name, model)
    assert pusher.flush()


def test_push_reaches_a_connected_client(make_app, clients, redis_client,
                                         redis_address, channel):
    with serving(make_app()) as url:
        client = clients(url)
        # The server subscribes when its first client connects.
        assert wait_until(lambda: listeners(redis_client, channel) == 1, 5)
        marker = uuid.uuid4().hex
        model = {'id': 1, 'nickname': 'susan', 'marker': marker}
        push(redis_address, channel, 'User', model)
        args = client.next('updated_model', match=marked(marker))
        assert args == ({'class': 'User', 'model': model},)
        client.sio.disconnect()


def test_one_push_reaches_every_instance(make_app, clients, redis_client,
                                         redis_address, channel):
    with serving(make_app()) as first_url, serving(make_app()) as second_url:
        alice, bob = clients(first_url), clients(first_url)
        carol = clients(second_url)
        assert wait_until(lambda: listeners(redis_client, channel) == 2, 5)
        marker = uuid.uuid4().hex
        model = {'id': 5, 'source': 'hi', 'html': 'hi', 'marker': marker}
        push(redis_address, channel, 'Message', model)
        for client in (alice, bob, carol):
            args = client.next('updated_model', match=marked(marker))
            assert args == ({'class': 'Message', 'model': model},)
        # Exactly once each.
        time.sleep(0.3)
        for client in (alice, bob, carol):
            assert client.received('updated_model', marked(marker)) == []
            client.sio.disconnect()


def test_expired_token_stays_with_its_client(make_app, clients, http,
                                             redis_client, channel):
    """A 401 answer goes to the one client, on no other instance."""
    http.routes[('PUT', USERS_ME)] = answer(401)
    with serving(make_app()) as first_url, serving(make_app()) as second_url:
        alice, bob = clients(first_url), clients(first_url)
        carol = clients(second_url)
        assert wait_until(lambda: listeners(redis_client, channel) == 2, 5)
        alice.sio.emit('ping_user', 'some.expired.token')
        assert alice.next('expired_token') == ()
        time.sleep(0.3)
        assert bob.received('expired_token') == []
        assert carol.received('expired_token') == []
        for client in (alice, bob, carol):
            client.sio.disconnect()


def test_events_still_work_while_redis_is_down(http, clients):
    """Without its message queue an instance still relays events and
    answers expired_token (which never goes through Redis); only pushes
    are missing until Redis is back."""
    class NoRedisConfig(TestConfig):
        REDIS = f'127.0.0.1:{free_port()}'     # nothing listens there
    app = create_app(NoRedisConfig, etcd=FakeEtcd(), http=http)
    with serving(app) as url:
        client = clients(url)
        client.sio.emit('ping_user', 'good.token')
        assert wait_until(lambda: http.calls, 5)
        assert http.calls[0] == ('PUT', USERS_ME, {'token': 'good.token'})
        http.routes[('PUT', USERS_ME)] = answer(401)
        client.sio.emit('ping_user', 'good.token')
        assert client.next('expired_token') == ()
        client.sio.disconnect()


class PrivateRedis:
    """A Redis of this test's own, on a free port: it can be killed."""

    def __init__(self, directory):
        self.directory = directory
        self.port = free_port()
        self.address = f'127.0.0.1:{self.port}'
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [shutil.which('redis-server') or '/usr/bin/redis-server',
             '--port', str(self.port), '--bind', '127.0.0.1', '--save', '',
             '--appendonly', 'no', '--dir', str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis_lib.Redis(host='127.0.0.1', port=self.port)

        def answers():
            try:
                return client.ping()
            except redis_lib.RedisError:
                return False
        assert wait_until(answers, 5)
        client.close()
        return self

    def kill(self):
        self.process.kill()
        self.process.wait(5)


def test_a_redis_restart_is_caught_up(http, clients, tmp_path, caplog):
    """Redis killed for 3 s: within a second of its return the instance
    listens again and tells its clients to catch up (resync); pushes
    reach them again; a pusher that dropped pushes meanwhile sends a
    resync too once it can publish (which reaches the clients only if the
    instance has subscribed again by then: the instance's own resync is
    the one they can count on)."""
    caplog.set_level(logging.INFO, logger='microflack_common.events')
    private = PrivateRedis(tmp_path).start()

    class PrivateConfig(TestConfig):
        REDIS = private.address
    app = create_app(PrivateConfig, etcd=FakeEtcd(), http=http)
    try:
        with serving(app) as url:
            client = clients(url)
            pusher = ModelPusher.from_redis(private.address)
            marker = uuid.uuid4().hex
            pusher.push('User', {'id': 1, 'marker': marker})
            assert pusher.flush()
            client.next('updated_model', match=marked(marker))
            # The first subscription's resync, if it came after the client
            # joined (a push before the subscription reached nobody).
            client.received('resync')
            private.kill()
            lost = uuid.uuid4().hex
            pusher.push('User', {'id': 1, 'marker': lost})    # dropped
            assert pusher.flush()
            time.sleep(3)
            private.start()
            back = time.monotonic()
            client.next('resync', timeout=5)
            assert time.monotonic() - back < 1.5
            # The pusher's own resync (it tries every second).
            assert wait_until(lambda: 'clients told to catch up'
                              in caplog.text, 5), caplog.text
            marker = uuid.uuid4().hex
            pusher.push('User', {'id': 1, 'marker': marker})
            assert pusher.flush()
            client.next('updated_model', match=marked(marker))
            assert client.received('updated_model', marked(lost)) == []
            client.sio.disconnect()
    finally:
        if private.process.poll() is None:
            private.kill()
