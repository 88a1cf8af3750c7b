"""Model pushes: the publisher against a real Redis."""
import json
import logging
import socket
import threading
import time

import pytest
import redis as redis_lib
from flask import Flask
from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy.orm import declarative_base, sessionmaker

from microflack_common import config as common_config
from microflack_common.events import (
    CHANNEL,
    ModelPusher,
    NullPusher,
    RedisError,
    RedisPublisher,
    redis_url,
    track_model_changes,
)
from microflack_common.service import init_service
from microflack_common.testing import RecordingPusher


@pytest.fixture(scope='module', autouse=True)
def platform_listening(redis_address):
    """A platform running on this host (its socketio instances listen on
    the default channel of the same Redis) changes nothing here."""
    host, port = redis_address.rsplit(':', 1)
    pubsub = redis_lib.Redis(host=host, port=int(port)).pubsub()
    pubsub.subscribe(CHANNEL)
    pubsub.get_message(timeout=1)       # the subscribe confirmation
    yield
    pubsub.close()


@pytest.fixture
def subscriber(redis_address, channel):
    host, port = redis_address.rsplit(':', 1)
    client = redis_lib.Redis(host=host, port=int(port))
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)       # the subscribe confirmation
    yield pubsub
    pubsub.close()


def next_event(pubsub, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message['type'] == 'message':
            return json.loads(message['data'])
    raise AssertionError('no event published')


def test_push_reaches_redis(redis_address, channel, subscriber):
    pusher = ModelPusher.from_redis(redis_address, channel)
    pusher.push('User', {'id': 1, 'nickname': 'susan'})
    event = next_event(subscriber)
    assert event['method'] == 'emit'
    assert event['event'] == 'updated_model'
    assert event['data'] == [{'class': 'User',
                              'model': {'id': 1, 'nickname': 'susan'}}]
    assert event['namespace'] == '/'
    assert pusher.flush()


def test_redis_down_drops_and_recovers(redis_address, channel, subscriber,
                                       caplog):
    from microflack_common.testing import free_port
    caplog.set_level(logging.INFO, logger='microflack_common.events')
    pusher = ModelPusher.from_redis(f'127.0.0.1:{free_port()}')
    start = time.monotonic()
    pusher.push('User', {'id': 1})
    assert time.monotonic() - start < 0.1      # never blocks the caller
    assert pusher.flush(10)
    assert 'cannot push User update' in caplog.text
    # The same pusher works again once its Redis is reachable.
    pusher._emitter_factory = ModelPusher.from_redis(
        redis_address, channel)._emitter_factory
    pusher._emitter = None
    pusher._retry_at = 0
    pusher.push('Message', {'id': 2})
    # First a resync: the clients missed the push that was dropped.
    resync = next_event(subscriber)
    assert (resync['event'], resync['data']) == ('resync', [{}])
    assert next_event(subscriber)['data'][0]['model'] == {'id': 2}
    assert pusher.flush()
    assert 'pushes resumed, clients told to catch up' in caplog.text


def test_a_pusher_back_from_an_outage_sends_a_resync_unasked(
        redis_address, channel, subscriber):
    """Nothing more is pushed after the pushes that were dropped: the
    pusher still tells the clients, within a second or so of Redis being
    back."""
    from microflack_common.testing import free_port
    pusher = ModelPusher.from_redis(f'127.0.0.1:{free_port()}')
    pusher.push('User', {'id': 1})          # dropped
    assert pusher.flush(10)
    pusher._emitter_factory = ModelPusher.from_redis(
        redis_address, channel)._emitter_factory
    pusher._emitter = None
    resync = next_event(subscriber)
    assert (resync['event'], resync['data']) == ('resync', [{}])


def test_a_push_after_redis_dropped_the_connection_is_not_lost(
        redis_address, channel, subscriber):
    """Redis restarted (here: it closed the pusher's connection): the next
    push goes out on a new connection instead of being dropped."""
    pusher = ModelPusher.from_redis(redis_address, channel)
    pusher.push('User', {'id': 1})
    assert next_event(subscriber)['data'][0]['model'] == {'id': 1}
    client_id = pusher._emitter.command('CLIENT', 'ID')
    host, port = redis_address.rsplit(':', 1)
    killer = redis_lib.Redis(host=host, port=int(port))
    killer.execute_command('CLIENT', 'KILL', 'ID', client_id)
    killer.close()
    pusher.push('User', {'id': 2})
    assert next_event(subscriber)['data'][0]['model'] == {'id': 2}
    assert pusher.flush()


def test_custom_channel(redis_address, channel, subscriber):
    pusher = ModelPusher.from_redis(redis_address, channel)
    pusher.push('User', {'id': 3})
    assert next_event(subscriber)['data'][0]['model'] == {'id': 3}


def test_the_default_channel_is_flask_socketios():
    assert RedisPublisher('127.0.0.1:6379').channel == CHANNEL
    assert CHANNEL == 'flask-socketio'


def test_no_redis_means_no_pushes():
    assert isinstance(ModelPusher.from_redis(None), NullPusher)
    assert isinstance(ModelPusher.from_redis(''), NullPusher)


Base = declarative_base()


class Item(Base):
    __tablename__ = 'items'
    id = Column(Integer, primary_key=True)
    name = Column(String(10))

    def to_dict(self):
        return {'id': self.id, 'name': self.name}


Session = sessionmaker()
track_model_changes(Session, {Item: 'Item'})


def test_track_model_changes_pushes_after_commit():
    class Config(common_config.TestConfig):
        SERVICE_NAME = 'items'
    app = Flask('items')
    app.config.from_object(Config)
    pusher = RecordingPusher()
    init_service(app, pusher=pusher)
    engine = create_engine('sqlite://')
    Base.metadata.create_all(engine)
    with app.app_context():
        session = Session(bind=engine)
        item = Item(name='a')
        session.add(item)
        session.flush()
        assert pusher.pushes == []          # not before the commit
        session.commit()
        assert pusher.pushes == [('Item', {'id': 1, 'name': 'a'})]
        item.name = 'b'
        session.commit()
        assert pusher.pushes[-1] == ('Item', {'id': 1, 'name': 'b'})
        session.commit()                    # nothing changed: no push
        assert len(pusher.pushes) == 2
        item.name = 'c'
        session.flush()
        session.rollback()                  # rolled back: no push
        assert len(pusher.pushes) == 2
        session.close()


def test_pushes_are_python_socketio_messages(redis_address, channel,
                                             subscriber):
    """The socketio service's listener reads what python-socketio's own
    write-only Redis manager publishes: the publisher sends the very same
    message (only the sender's random id differs)."""
    import socketio
    model = {'class': 'User', 'model': {'id': 1, 'nickname': 'susan'}}
    RedisPublisher(redis_address, channel).emit('updated_model', model)
    theirs = socketio.RedisManager(redis_url(redis_address), channel=channel,
                                   write_only=True)
    theirs.emit('updated_model', model, namespace='/')
    ours, reference = next_event(subscriber), next_event(subscriber)
    assert len(ours.pop('host_id')) == len(reference.pop('host_id')) == 32
    assert ours == reference


def test_publisher_selects_its_database(redis_address, channel, subscriber):
    publisher = RedisPublisher(f'redis://{redis_address}/3', channel)
    assert publisher.database == 3
    assert publisher.emit('updated_model', {'id': 4}) == '1'   # 1 listener
    assert next_event(subscriber)['data'] == [{'id': 4}]


def test_publisher_reports_redis_errors(redis_address):
    """A refused AUTH (this Redis has no password) is an error, not a
    silent drop; the publisher is left disconnected."""
    publisher = RedisPublisher(f'redis://:not-the-password@{redis_address}/0')
    assert publisher.credentials == ('not-the-password',)
    with pytest.raises(RedisError):
        publisher.emit('updated_model', {'id': 5})
    assert publisher._socket is None


def test_publisher_reconnects_after_redis_dropped_it(redis_address, channel,
                                                     subscriber):
    host, port = redis_address.rsplit(':', 1)
    publisher = RedisPublisher(redis_address, channel)
    client_id = publisher.command('CLIENT', 'ID')
    redis_lib.Redis(host=host, port=int(port)).client_kill_filter(
        _id=client_id)
    # Sent again at once, on a new connection: not lost.
    assert publisher.emit('updated_model', {'id': 6}) == '1'
    assert next_event(subscriber)['data'] == [{'id': 6}]
    assert publisher.emit('updated_model', {'id': 7}) == '1'
    assert next_event(subscriber)['data'] == [{'id': 7}]


def test_a_server_that_hangs_up_is_an_error():
    with socket.socket() as server:
        server.bind(('127.0.0.1', 0))
        server.listen()
        port = server.getsockname()[1]
        hang_up = threading.Thread(target=lambda: server.accept()[0].close())
        hang_up.start()
        with pytest.raises((RedisError, OSError)):
            RedisPublisher(f'127.0.0.1:{port}').emit('updated_model', {})
        hang_up.join(5)
