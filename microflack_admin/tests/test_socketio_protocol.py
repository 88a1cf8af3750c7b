"""The Socket.IO contract (SPEC section 5) end to end: python-socketio
clients over WebSocket through the load balancer of the whole platform.

Users, messages and pushes are matched by unique nicknames and markers:
the platform is shared with the other test files, and the Redis channel
may be shared with other platforms on this host.
"""
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest
import socketio

from microflack_common.tokens import generate_token

WAIT = 5            # seconds an expected event may take
QUIET = 0.5         # seconds in which an event that must not come stays away
BACKEND = 'socketio_backend'


class Client:
    """A python-socketio client on one WebSocket through the load balancer,
    from ``source`` (any 127.0.0.0/8 address: the load balancer picks the
    socketio instance by source address). Records every event it gets."""

    def __init__(self, lb, source='127.0.0.1'):
        self.source = source
        url = urlsplit(lb)
        # websocket-client takes an already connected socket: this is how
        # the connection gets its source address.
        self.sock = socket.create_connection(
            (url.hostname, url.port or 80), timeout=WAIT,
            source_address=(source, 0))
        self.sio = socketio.Client(
            reconnection=False, websocket_extra_options={'socket': self.sock})
        self.events = []
        self._changed = threading.Condition()
        for name in ('updated_model', 'expired_token'):
            self.sio.on(name, self._recorder(name))
        try:
            self.sio.connect(lb, transports=['websocket'],
                             socketio_path='/socket.io', wait_timeout=WAIT)
        except Exception:
            self.sock.close()
            raise

    def _recorder(self, name):
        def record(data=None):
            with self._changed:
                self.events.append((name, data))
                self._changed.notify_all()
        return record

    def emit(self, event, *args):
        self.sio.emit(event, args)

    def call(self, event, *args):
        """Emit and wait until the server's handler has finished (its
        acknowledgement)."""
        return self.sio.call(event, args, timeout=WAIT)

    def forget(self):
        """Drop the events received so far."""
        with self._changed:
            self.events.clear()

    def received(self, name, match=None):
        with self._changed:
            return [data for event, data in self.events if event == name
                    and (match is None or match(data))]

    def wait_for(self, name, match=None, timeout=WAIT):
        """The first ``name`` event whose data ``match`` accepts."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [data for event, data in self.events
                         if event == name and (match is None or match(data))]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f'{self.source}: no matching {name} within {timeout} '
                        f's; got {self.events!r}')
                self._changed.wait(left)

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()
        self.sock.close()


def routed_instances(platform):
    """The registered socketio instances HAProxy routes to (status UP)."""
    rows = platform.stats()
    return sorted(instance for instance in platform.instances('socketio')
                  if rows.get((BACKEND, instance), {}).get('status') == 'UP')


def wait_until_routed(platform, count):
    """Registration comes first, routing a moment later (the load
    balancer's watcher reloads HAProxy, whose health check then marks the
    server UP): a connection before that reaches the UI backend."""
    return platform.wait_for(
        lambda: len(routed_instances(platform)) == count and
        routed_instances(platform), timeout=10, interval=0.1,
        what=f'{count} socketio instance(s) routed')


@pytest.fixture
def connect(platform):
    """connect(source='127.0.0.1') -> a connected Client; all are
    disconnected at the end of the test."""
    wait_until_routed(platform, len(platform.instances('socketio')))
    clients = []

    def make(source='127.0.0.1'):
        client = Client(platform.lb, source)
        clients.append(client)
        return client
    yield make
    for client in clients:
        client.close()


def unique(prefix):
    return f'{prefix}_{uuid.uuid4().hex[:10]}'


def new_user(platform, prefix='sio'):
    """A new user and a fresh token: (user JSON, token)."""
    nickname = unique(prefix)
    rv = platform.http.post(f'{platform.lb}/api/users', timeout=10,
                            json={'nickname': nickname, 'password': 'pw'})
    assert rv.status_code == 201, rv.text
    user = rv.json()
    rv = platform.http.post(f'{platform.lb}/api/tokens', timeout=10,
                            auth=(nickname, 'pw'))
    assert rv.status_code == 200, rv.text
    return user, rv.json()['token']


def rest_user(platform, user_id):
    rv = platform.http.get(f'{platform.lb}/api/users/{user_id}', timeout=10)
    assert rv.status_code == 200, rv.text
    return rv.json()


def user_push(nickname, online):
    def match(data):
        return data['class'] == 'User' and \
            data['model']['nickname'] == nickname and \
            data['model']['online'] is online
    return match


def message_push(marker, html=None):
    def match(data):
        return data['class'] == 'Message' and \
            marker in data['model']['source'] and \
            (html is None or data['model']['html'] == html)
    return match


def go_offline(platform, token):
    rv = platform.http.delete(f'{platform.lb}/api/users/me', timeout=10,
                              headers={'Authorization': f'Bearer {token}'})
    assert rv.status_code == 204, rv.text


def socketio_sessions(platform):
    """{socketio instance: current sessions} from HAProxy's statistics."""
    return {server: int(row['scur'] or 0)
            for (backend, server), row in platform.stats().items()
            if backend == BACKEND and server not in ('BACKEND', 'FRONTEND')}


def test_connects_over_websocket_through_the_load_balancer(platform,
                                                            connect):
    before = sum(socketio_sessions(platform).values())
    client = connect()
    assert client.sio.connected
    assert client.sio.transport() == 'websocket'
    assert client.sio.get_sid()
    # The connection is one of the load balancer's socketio sessions.
    platform.wait_for(
        lambda: sum(socketio_sessions(platform).values()) >= before + 1,
        timeout=WAIT, what='the WebSocket counted by HAProxy')


def test_ping_user_marks_the_user_online(platform, connect):
    user, token = new_user(platform)
    go_offline(platform, token)       # logging in made it online
    assert rest_user(platform, user['id'])['online'] is False
    pinging, watching = connect(), connect()
    pinging.emit('ping_user', token)
    for client in (pinging, watching):
        pushed = client.wait_for('updated_model',
                                 user_push(user['nickname'], True))
        assert pushed['model']['id'] == user['id']
    # The REST API agrees (polled: one failed run read it offline just
    # after the push; a user set offline again would stay so and fail).
    platform.wait_for(lambda: rest_user(platform, user['id'])['online'],
                      timeout=WAIT, interval=0.1, what='online in the API')
    assert pinging.received('expired_token') == []


def forged_token(platform):
    user, _ = new_user(platform)
    return generate_token(user['id'], 'not-the-platform-key-' * 3)


def expired_token(platform):
    user, _ = new_user(platform)
    return generate_token(user['id'], platform.secret('JWT_SECRET_KEY'),
                          expires_in=-60)


@pytest.mark.parametrize('make_token', [
    lambda platform: 'garbage',
    lambda platform: 'not a token!',
    forged_token,
    expired_token,
], ids=['garbage', 'malformed', 'forged', 'expired'])
def test_ping_user_with_a_bad_token(platform, connect, make_token):
    token = make_token(platform)
    bad, other = connect(), connect()
    bad.emit('ping_user', token)
    bad.wait_for('expired_token')
    time.sleep(QUIET)
    assert other.received('expired_token') == []
    assert len(bad.received('expired_token')) == 1


def test_ping_user_with_a_revoked_token(platform, connect):
    user, token = new_user(platform)
    rv = platform.http.delete(f'{platform.lb}/api/tokens', timeout=10,
                              headers={'Authorization': f'Bearer {token}'})
    assert rv.status_code == 204, rv.text
    revoked, other = connect(), connect()
    # Services may cache a revocation check for a moment: ping until the
    # refusal comes (the token was never checked by users before, though).
    deadline = time.monotonic() + 3 * WAIT
    while not revoked.received('expired_token'):
        assert time.monotonic() < deadline, 'revoked token still accepted'
        revoked.emit('ping_user', token)
        try:
            revoked.wait_for('expired_token', timeout=1)
        except AssertionError:
            pass
    time.sleep(QUIET)
    assert other.received('expired_token') == []


def log_in(platform, nickname, password='pw'):
    rv = platform.http.post(f'{platform.lb}/api/tokens', timeout=10,
                            auth=(nickname, password))
    return rv.json()['token'] if rv.status_code == 200 else None


def refused_by_every_service(platform, token, client):
    """Whether every service and the Socket.IO relay refuse ``token``."""
    auth = {'Authorization': f'Bearer {token}'}
    statuses = [platform.http.request(method, f'{platform.lb}{path}',
                                      headers=auth, timeout=10, json=body)
                .status_code
                for method, path, body in [
                    ('GET', '/api/tokens', None),
                    ('PUT', '/api/users/me', None),
                    ('POST', '/api/messages', {'source': unique('late')})]]
    if statuses != [401, 401, 401]:
        return False
    client.forget()
    client.emit('post_message', {'source': unique('late')}, token)
    try:
        client.wait_for('expired_token', timeout=1)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize('how', ['password change', 'log out everywhere'])
def test_every_session_of_the_user_ends(platform, connect, how):
    """Issue 19, finding 2 and issue 20, item 9: one request ends every
    token the user holds, in every service and on every Socket.IO
    connection, within seconds; another user's tokens go on working and
    the user can log in again (with the new password)."""
    user, first = new_user(platform, 'ends')
    second = log_in(platform, user['nickname'])
    _, bystander = new_user(platform, 'stays')
    client = connect()
    client.emit('ping_user', second)
    time.sleep(QUIET)       # the ping is handled: this page is signed in
    auth = {'Authorization': f'Bearer {first}'}
    if how == 'password change':
        rv = platform.http.put(
            f"{platform.lb}/api/users/{user['id']}", headers=auth,
            timeout=10, json={'password': 'new', 'current_password': 'pw'})
        password = 'new'
    else:
        rv = platform.http.delete(f'{platform.lb}/api/tokens/all',
                                  headers=auth, timeout=10)
        password = 'pw'
    assert rv.status_code == 204, rv.text
    # The page is logged out at once, without a ping of its own (its
    # socketio instance follows the revocations).
    client.wait_for('expired_token', timeout=5)
    for token in (first, second):
        platform.wait_for(
            lambda token=token: refused_by_every_service(platform, token,
                                                         client),
            timeout=5, interval=0.2, what='every token of the user refused')
    rv = platform.http.put(f'{platform.lb}/api/users/me', timeout=10,
                           headers={'Authorization': f'Bearer {bystander}'})
    assert rv.status_code == 204
    if how == 'password change':
        assert log_in(platform, user['nickname'], 'pw') is None
    time.sleep(0.01)
    again = log_in(platform, user['nickname'], password)
    client.forget()
    client.emit('ping_user', again)
    time.sleep(QUIET)
    assert client.received('expired_token') == []


def test_post_message_reaches_every_client(platform, connect):
    user, token = new_user(platform)
    marker = unique('msg')
    source = f'hello *{marker}*!'
    html = f'hello <em>{marker}</em>!'
    clients = [connect() for _ in range(3)]
    clients[0].emit('post_message', {'source': source}, token)
    pushes = [client.wait_for('updated_model', message_push(marker))
              for client in clients]
    model = pushes[0]['model']
    assert model['source'] == source
    assert model['user_id'] == user['id']
    assert all(push['model']['id'] == model['id'] for push in pushes)
    # Rendered (at once or by a later push of the same message).
    for client in clients:
        client.wait_for('updated_model', message_push(marker, html))
    rv = platform.http.get(f"{platform.lb}/api/messages/{model['id']}",
                           timeout=10)
    assert rv.status_code == 200
    assert rv.json()['source'] == source
    assert rv.json()['html'] == html
    assert all(client.received('expired_token') == [] for client in clients)


def test_post_message_with_a_bad_token(platform, connect):
    marker = unique('refused')
    poster, other = connect(), connect()
    for token in (expired_token(platform), 'garbage'):
        poster.emit('post_message', {'source': marker}, token)
        poster.wait_for('expired_token')
        poster.forget()
    time.sleep(QUIET)
    assert other.received('expired_token') == []
    assert other.received('updated_model', message_push(marker)) == []
    rv = platform.http.get(f'{platform.lb}/api/messages', timeout=10)
    assert all(marker not in message['source']
               for message in rv.json()['messages'])


def test_disconnect_marks_the_user_offline(platform, connect):
    user, token = new_user(platform)
    go_offline(platform, token)       # so that the ping is pushed
    leaving, watching = connect(), connect()
    # Acknowledged: the server has remembered the token once the handler
    # is done. (The online push alone does not tell: it can overtake the
    # relay's answer, and a disconnect before the answer goes unnoticed.)
    leaving.call('ping_user', token)
    watching.wait_for('updated_model', user_push(user['nickname'], True))
    watching.forget()
    leaving.close()
    pushed = watching.wait_for('updated_model',
                               user_push(user['nickname'], False))
    assert pushed['model']['id'] == user['id']
    assert rest_user(platform, user['id'])['online'] is False


def instance_of(platform, source, connect):
    """Connect from ``source``; (client, the socketio instance HAProxy put
    the connection on)."""
    before = socketio_sessions(platform)
    client = connect(source)

    def moved():
        now = socketio_sessions(platform)
        grown = [server for server in now
                 if now[server] > before.get(server, 0)]
        return grown[0] if len(grown) == 1 else None
    return client, platform.wait_for(moved, timeout=WAIT, interval=0.05,
                                     what=f'the connection from {source} '
                                          f'in the statistics')


def test_a_message_reaches_clients_of_another_instance(platform, connect):
    user, token = new_user(platform)
    first = platform.instances('socketio')
    assert len(first) == 1
    second = platform.run('mfrun', 'socketio').stdout.strip()
    clients = []
    try:
        assert second.startswith('socketio_v')
        assert sorted([*first, second]) == platform.instances('socketio')
        assert wait_until_routed(platform, 2) == sorted([*first, second])
        # Source addresses 127.0.0.2, .3, ... until each instance has a
        # client (balance source: the address decides the instance).
        by_instance = {}
        for last in range(2, 40):
            client, instance = instance_of(platform, f'127.0.0.{last}',
                                           connect)
            clients.append(client)
            by_instance.setdefault(instance, client)
            if len(by_instance) == 2:
                break
        assert sorted(by_instance) == sorted([*first, second])
        one, other = by_instance[first[0]], by_instance[second]
        assert one.source != other.source
        for poster, reader in ((one, other), (other, one)):
            marker = unique('across')
            poster.emit('post_message', {'source': marker}, token)
            pushed = reader.wait_for('updated_model', message_push(marker))
            assert pushed['model']['user_id'] == user['id']
            poster.wait_for('updated_model', message_push(marker))
    finally:
        for client in clients:
            client.close()
        platform.run('mfkill', second)
    assert platform.instances('socketio') == first
