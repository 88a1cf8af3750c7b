"""The app's wiring: configuration, registration, the Socket.IO endpoint,
CORS and the message queue."""
import json
import signal

import pytest
import socketio as socketio_lib

from microflack_common.config import ConfigError
from microflack_common.registration import registration_from_config
from microflack_common.testing import (
    FakeEtcd,
    FakeServiceClient,
    gunicorn_arbiter,
    gunicorn_worker,
)
from microflack_socketio.app import create_app
from microflack_socketio.config import Config, ProdConfig, TestConfig, allowed_origins
from microflack_socketio.events import stop_cleanly_under_gunicorn
from microflack_socketio.message_queue import RedisQueue

HANDSHAKE = '/socket.io/?EIO=4&transport=polling'


def handshake(app, **headers):
    return app.test_client().get(HANDSHAKE, headers=headers)


def test_registers_sticky_at_socket_io_path(app):
    assert app.config['SERVICE_URL'] == '/socket.io'
    assert app.config['LB_ALGORITHM'] == 'source'
    # No per-instance limit (WebSockets stay connected), and room for a
    # polling request that waits for news.
    assert app.config['LB_SERVER_MAXCONN'] == 0
    assert app.config['LB_TIMEOUT_SERVER'] == 60
    etcd = FakeEtcd()
    config = dict(app.config, SERVICE_ADDRESS='127.0.0.1:5005',
                  INSTANCE_NAME='socketio_1')
    registration_from_config(etcd, config).register()
    assert etcd.get_value('/services/socketio/location') == '/socket.io'
    assert etcd.get_value('/services/socketio/backend/balance') == 'source'
    assert etcd.get_value('/services/socketio/upstream/socketio_1') == \
        '127.0.0.1:5005'


def test_health(app):
    rv = app.test_client().get('/health')
    assert rv.status_code == 200
    assert rv.json['service'] == 'socketio'


def test_no_http_endpoints_besides_health(app):
    rules = {rule.rule for rule in app.url_map.iter_rules()
             if rule.endpoint != 'static'}
    assert rules == {'/health'}
    rv = app.test_client().get('/api/users')
    assert rv.status_code == 404
    assert rv.json['error']


def test_socket_io_handshake(app):
    rv = handshake(app)
    assert rv.status_code == 200
    body = rv.get_data(as_text=True)
    assert body.startswith('0')
    opened = json.loads(body[1:])
    assert opened['sid']
    assert opened['upgrades'] == ['websocket']


def test_same_origin_only_by_default(app):
    assert app.config['CORS_ALLOWED_ORIGINS'] is None
    assert handshake(app, Origin='http://localhost').status_code == 200
    assert handshake(app, Origin='http://evil.example').status_code == 400


def test_allowed_origins_setting():
    class Config(TestConfig):
        CORS_ALLOWED_ORIGINS = allowed_origins('http://ui.example:8080')
    app = create_app(Config, etcd=FakeEtcd(), http=FakeServiceClient())
    rv = handshake(app, Origin='http://ui.example:8080')
    assert rv.status_code == 200
    assert rv.headers['Access-Control-Allow-Origin'] == \
        'http://ui.example:8080'
    assert handshake(app, Origin='http://evil.example').status_code == 400


def test_allowed_origins_parsing():
    assert allowed_origins(None) is None
    assert allowed_origins('  ') is None
    assert allowed_origins('*') == '*'
    assert allowed_origins('http://a.example, https://b.example:8443/') == \
        ['http://a.example', 'https://b.example:8443']
    for bad in ('a.example', 'ftp://a.example', 'http://a.example/path',
                'http://'):
        with pytest.raises(ConfigError, match='CORS_ALLOWED_ORIGINS'):
            allowed_origins(bad)


@pytest.mark.parametrize('redis, url', [
    ('127.0.0.1:6390', 'redis://127.0.0.1:6390/0'),
    ('redis://127.0.0.1:6390/2', 'redis://127.0.0.1:6390/2'),
])
def test_redis_message_queue_on_the_pushes_channel(redis, url):
    class Config(TestConfig):
        REDIS = redis
    # Nothing connects to Redis before a client does.
    app = create_app(Config, etcd=FakeEtcd(), http=FakeServiceClient())
    manager = app.extensions['socketio'].server.manager
    assert isinstance(manager, RedisQueue)
    assert isinstance(manager, socketio_lib.PubSubManager)
    assert manager.channel == 'flask-socketio'
    assert manager.url == url
    assert not manager.write_only


def test_no_message_queue_without_redis(app):
    manager = app.extensions['socketio'].server.manager
    assert not isinstance(manager, socketio_lib.PubSubManager)


def test_async_modes(app):
    assert app.extensions['socketio'].async_mode == 'threading'
    assert ProdConfig.SOCKETIO_ASYNC_MODE == 'eventlet'
    assert Config.SOCKETIO_STOP_TIMEOUT == 2


def test_prod_requires_the_load_balancer_and_redis():
    class Config(ProdConfig):
        SECRET_KEY = 's'
        JWT_SECRET_KEY = 'j'
        ETCD = 'http://127.0.0.1:2379'
        LB = None
        REDIS = None
    with pytest.raises(ConfigError, match='LB, REDIS'):
        create_app(Config)


def test_several_apps_side_by_side(http):
    first = create_app(TestConfig, etcd=FakeEtcd(), http=http)
    second = create_app(TestConfig, etcd=FakeEtcd(), http=http)
    assert first.extensions['socketio'] is not second.extensions['socketio']
    assert first.extensions['socketio'].server is not \
        second.extensions['socketio'].server


def test_clean_stop_set_up_only_inside_a_gunicorn_worker(app, caplog):
    caplog.set_level('INFO')
    handler = signal.getsignal(signal.SIGTERM)
    platform = app.extensions['microflack']
    stop_cleanly_under_gunicorn(app)
    assert signal.getsignal(signal.SIGTERM) is handler
    assert platform.shutdown_callbacks == []

    # gunicorn_config's post_worker_init, in a worker of the pinned gunicorn
    worker = gunicorn_worker(gunicorn_arbiter(graceful_timeout=4))
    try:
        platform.worker_started(worker)
        assert signal.getsignal(signal.SIGTERM) is not handler
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert worker.cfg.graceful_timeout == 2     # SOCKETIO_STOP_TIMEOUT
    assert len(platform.shutdown_callbacks) == 1
    assert 'applied dropping connections without a close packet to ' \
        'python-engineio ' in caplog.text
    assert "applied a worker's graceful timeout of 2 s to gunicorn " \
        in caplog.text
