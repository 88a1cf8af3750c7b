"""The Socket.IO events of SPEC section 5, with Flask-SocketIO's test client
and the relays answered by a FakeServiceClient."""
import logging
import queue
import threading

import pytest
import requests
import socketio as socketio_lib

from conftest import MESSAGES, USERS_ME, answer
from microflack_common.testing import FakeResponse, serving

EXPIRED = {'name': 'expired_token', 'args': [], 'namespace': '/'}
TOKEN = 'eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo3fQ.c2lnbmF0dXJl'


def calls_to(http, method, url):
    return [kwargs for m, u, kwargs in http.calls if (m, u) == (method, url)]


def test_ping_user_relays_with_the_token(connect, http):
    client = connect()
    client.emit('ping_user', TOKEN)
    assert http.calls == [('PUT', USERS_ME, {'token': TOKEN})]
    assert client.get_received() == []


def test_ping_user_remembers_the_token_for_disconnect(connect, http):
    client = connect()
    client.emit('ping_user', TOKEN)
    client.disconnect()
    assert http.calls[-1] == ('DELETE', USERS_ME, {'token': TOKEN})
    assert len(calls_to(http, 'DELETE', USERS_ME)) == 1


def test_client_gone_during_the_ping_is_marked_offline(connect, http,
                                                       monkeypatch):
    from microflack_socketio import events
    client = connect()
    # The client disconnected while PUT /api/users/me was in flight.
    monkeypatch.setattr(events, 'still_connected', lambda: False)
    client.emit('ping_user', TOKEN)
    assert http.calls == [('PUT', USERS_ME, {'token': TOKEN}),
                          ('DELETE', USERS_ME, {'token': TOKEN})]


def test_disconnect_uses_the_latest_pinged_token(connect, http):
    client = connect()
    client.emit('ping_user', TOKEN)
    client.emit('ping_user', TOKEN + 'x')
    client.disconnect()
    assert calls_to(http, 'DELETE', USERS_ME) == [{'token': TOKEN + 'x'}]


def test_disconnect_without_a_ping_sends_nothing(connect, http):
    client = connect()
    client.emit('post_message', {'source': 'hi'}, TOKEN)   # not a ping
    client.disconnect()
    assert calls_to(http, 'DELETE', USERS_ME) == []


def test_expired_token_goes_to_the_offending_client_only(connect, http):
    http.routes[('PUT', USERS_ME)] = answer(401, {'error': 'x'})
    alice, bob = connect(), connect()
    alice.emit('ping_user', TOKEN)
    assert alice.get_received() == [EXPIRED]
    assert bob.get_received() == []
    assert alice.is_connected() and bob.is_connected()


def test_refused_token_is_not_remembered(connect, http):
    client = connect()
    client.emit('ping_user', TOKEN)             # accepted: remembered
    http.routes[('PUT', USERS_ME)] = answer(401)
    client.emit('ping_user', TOKEN)             # now refused: forgotten
    assert client.get_received() == [EXPIRED]
    client.disconnect()
    assert calls_to(http, 'DELETE', USERS_ME) == []


def test_each_client_has_its_own_remembered_token(connect, http):
    alice, bob = connect(), connect()
    alice.emit('ping_user', 'alice.token')
    bob.emit('ping_user', 'bob.token')
    alice.disconnect()
    assert calls_to(http, 'DELETE', USERS_ME) == [{'token': 'alice.token'}]
    bob.disconnect()
    assert calls_to(http, 'DELETE', USERS_ME)[-1] == {'token': 'bob.token'}


def test_post_message_relays_the_data(connect, http):
    client = connect()
    client.emit('post_message', {'source': 'hello *world*!'}, TOKEN)
    assert http.calls == [('POST', MESSAGES, {
        'token': TOKEN, 'json': {'source': 'hello *world*!'}})]
    assert client.get_received() == []


def test_post_message_with_refused_token(connect, http):
    http.routes[('POST', MESSAGES)] = answer(401, {'error': 'x'})
    alice, bob = connect(), connect()
    alice.emit('post_message', {'source': 'hi'}, TOKEN)
    assert alice.get_received() == [EXPIRED]
    assert bob.get_received() == []


def test_post_message_rejected_input_is_logged_not_expired(connect, http,
                                                           caplog):
    http.routes[('POST', MESSAGES)] = answer(400, {'error': 'no source'})
    client = connect()
    with caplog.at_level(logging.INFO, logger='microflack_socketio.events'):
        client.emit('post_message', {'text': 'wrong field'}, TOKEN)
    assert client.get_received() == []
    assert 'POST /api/messages answered 400' in caplog.text


@pytest.mark.parametrize('args', [
    (), (None,), (42,), ('',), (['a.b.c'],), ({'token': TOKEN},),
    ('has space',), ('line\nbreak',), ('x' * 5000,), (True,),
])
def test_ping_user_with_unusable_token(connect, http, args, caplog):
    client = connect()
    with caplog.at_level(logging.INFO, logger='microflack_socketio.events'):
        client.emit('ping_user', *args)
    assert client.get_received() == [EXPIRED]
    assert http.calls == []
    assert 'without a usable token' in caplog.text
    client.disconnect()
    assert http.calls == []     # nothing was remembered


@pytest.mark.parametrize('args', [
    (), ({'source': 'hi'},), ({'source': 'hi'}, None), ({'source': 'hi'}, 7),
    ({'source': 'hi'}, 'bad token'),
])
def test_post_message_with_unusable_token(connect, http, args):
    client = connect()
    client.emit('post_message', *args)
    assert client.get_received() == [EXPIRED]
    assert http.calls == []


@pytest.mark.parametrize('data', [None, 'hello', 42, ['hello'], True])
def test_post_message_with_non_object_data(connect, http, data, caplog):
    client = connect()
    with caplog.at_level(logging.INFO, logger='microflack_socketio.events'):
        client.emit('post_message', data, TOKEN)
    assert client.get_received() == []
    assert http.calls == []
    assert 'must be an object' in caplog.text


def test_extra_arguments_are_ignored(connect, http):
    client = connect()
    client.emit('ping_user', TOKEN, 'extra', 3)
    client.emit('post_message', {'source': 'hi'}, TOKEN, 'extra')
    assert [(m, u) for m, u, _ in http.calls] == [
        ('PUT', USERS_ME), ('POST', MESSAGES)]


@pytest.mark.parametrize('error', [
    requests.ConnectionError('refused'), requests.Timeout('slow'),
    requests.exceptions.RetryError('gave up'),
])
def test_relay_failures_keep_the_connection(connect, http, error, caplog):
    for route in (('PUT', USERS_ME), ('POST', MESSAGES),
                  ('DELETE', USERS_ME)):
        http.routes[route] = error
    client = connect()
    with caplog.at_level(logging.WARNING, logger='microflack_socketio.events'):
        client.emit('ping_user', TOKEN)
        client.emit('post_message', {'source': 'hi'}, TOKEN)
    assert client.is_connected()
    assert client.get_received() == []
    assert 'PUT /api/users/me: no answer' in caplog.text
    assert 'POST /api/messages: no answer' in caplog.text
    # The token was not refused: it is still used to mark the user offline.
    client.disconnect()
    assert calls_to(http, 'DELETE', USERS_ME) == [{'token': TOKEN}]


def test_server_errors_are_logged(connect, http, caplog):
    http.routes[('PUT', USERS_ME)] = answer(503, {'error': 'busy'})
    client = connect()
    with caplog.at_level(logging.WARNING, logger='microflack_socketio.events'):
        client.emit('ping_user', TOKEN)
    assert client.get_received() == []
    assert 'PUT /api/users/me answered 503' in caplog.text


def test_unexpected_errors_are_logged_and_the_client_stays(connect, http,
                                                           caplog):
    http.routes[('PUT', USERS_ME)] = RuntimeError('a bug')
    client = connect()
    with caplog.at_level(logging.ERROR, logger='microflack_socketio.events'):
        client.emit('ping_user', TOKEN)
    assert "Socket.IO event 'ping_user' failed" in caplog.text
    assert 'a bug' in caplog.text
    assert client.is_connected()
    http.routes[('PUT', USERS_ME)] = answer(401)
    client.emit('ping_user', TOKEN)
    assert client.get_received() == [EXPIRED]


def test_relays_in_flight_are_counted(app, connect, http):
    connections = app.extensions['microflack_connections']
    seen = []

    def users_me(**kwargs):
        seen.append(connections.relays_in_flight)
        return FakeResponse(204)
    http.routes[('PUT', USERS_ME)] = users_me
    connect().emit('ping_user', TOKEN)
    assert seen == [1]
    assert connections.relays_in_flight == 0
    http.routes[('PUT', USERS_ME)] = requests.ConnectionError('x')
    connect().emit('ping_user', TOKEN)
    assert connections.relays_in_flight == 0


def test_wait_for_relays(app):
    connections = app.extensions['microflack_connections']
    assert connections.wait_for_relays(0.1)
    entered, release = threading.Event(), threading.Event()

    def relay():
        with connections.relaying():
            entered.set()
            release.wait(5)
    thread = threading.Thread(target=relay)
    thread.start()
    entered.wait(5)
    assert not connections.wait_for_relays(0.1)
    threading.Timer(0.2, release.set).start()
    assert connections.wait_for_relays(5)
    thread.join(5)


def test_no_offline_relay_while_the_instance_stops(app, connect, http):
    client = connect()
    client.emit('ping_user', TOKEN)
    app.extensions['microflack_connections'].closing = True
    client.disconnect()
    assert calls_to(http, 'DELETE', USERS_ME) == []


def test_closing_all_connections_makes_clients_reconnect(app, http):
    """What a stopping instance does: its clients see their connection
    drop (not a final 'server disconnect') and reconnect by themselves;
    their users are not marked offline."""
    connections = app.extensions['microflack_connections']
    events = queue.Queue()
    client = socketio_lib.Client(reconnection=True, reconnection_delay=0.1,
                                 reconnection_delay_max=0.2)
    client.on('connect', lambda: events.put('connect'))
    client.on('disconnect', lambda reason: events.put(reason))
    with serving(app) as url:
        try:
            client.connect(url, transports=['polling'], wait_timeout=5)
            assert events.get(timeout=5) == 'connect'
            client.call('ping_user', TOKEN, timeout=5)
            assert connections.close_all() == 1
            assert events.get(timeout=5) == 'transport error'
            assert events.get(timeout=5) == 'connect'     # back again
        finally:
            client.disconnect()
    assert calls_to(http, 'DELETE', USERS_ME) == []
    assert connections.closing


# -- every token of a user revoked: its pages logged out at once (issue 20
# item 9, issue 19 finding 2) --

def signed_token(app, user_id, issued):
    import jwt
    return jwt.encode({'user_id': user_id, 'exp': int(issued) + 3600,
                       'iat': issued, 'jti': f'{user_id}-{issued}'},
                      app.config['JWT_SECRET_KEY'], algorithm='HS256')


def revoke_user(app, socketio, user_id, since):
    from microflack_socketio.events import SIGNED_IN, log_out_pages
    log_out_pages(socketio, app.extensions[SIGNED_IN],
                  f'/revoked-users/{user_id}', f'{since:.3f}')


def test_a_revocation_of_the_user_logs_its_pages_out(app, socketio, connect,
                                                    http):
    import time
    now = time.time()
    older, newer = signed_token(app, 7, now - 10), signed_token(app, 7, now)
    other_user = signed_token(app, 8, now - 10)
    first, second, later, bystander = connect(), connect(), connect(), \
        connect()
    first.emit('ping_user', older)
    second.emit('ping_user', older)
    later.emit('ping_user', newer)          # logged in after the revocation
    bystander.emit('ping_user', other_user)
    revoke_user(app, socketio, 7, now - 1)
    assert first.get_received() == [EXPIRED]
    assert second.get_received() == [EXPIRED]
    assert later.get_received() == [] and bystander.get_received() == []
    # Each once: a second revocation finds them gone.
    revoke_user(app, socketio, 7, now - 1)
    assert first.get_received() == []


def test_a_connection_that_left_or_was_refused_is_not_told(app, socketio,
                                                           connect, http):
    import time
    now = time.time()
    token = signed_token(app, 7, now - 10)
    gone, refused = connect(), connect()
    gone.emit('ping_user', token)
    refused.emit('ping_user', token)
    gone.disconnect()
    http.routes[('PUT', USERS_ME)] = answer(401)
    refused.emit('ping_user', token)
    assert refused.get_received() == [EXPIRED]
    revoke_user(app, socketio, 7, now)
    assert refused.get_received() == []
