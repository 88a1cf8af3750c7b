"""Logging in with Basic auth, who is online, and the platform's token
rules: any valid token marks its user seen; bad ones get 401."""
import base64
import time

import jwt

from microflack_common.utils import timestamp

CHALLENGE = 'Bearer realm="Authentication Required"'


def assert_401(rv):
    assert rv.status == 401, rv
    assert rv.headers['WWW-Authenticate'] == CHALLENGE
    assert rv.json == {'error': 'authentication required'}


def test_login(client, add_user, rows, pusher):
    susan = add_user('susan', 'dog', online=False, last_seen_at=1000)
    before = timestamp()
    rv = client.get('/api/users/me', basic=('susan', 'dog'))
    assert rv.status == 200
    assert rv.json['id'] == susan
    assert rv.json['nickname'] == 'susan'
    assert rv.json['online'] is True
    assert rv.json['last_seen_at'] >= before
    assert 'password_hash' not in rv.json and 'password' not in rv.json
    assert rows()[0]['online'] is True
    assert [(name, model['online']) for name, model in pusher.pushes] == \
        [('User', True)]


def test_login_with_unicode_credentials(client, add_user):
    # The tokens service relays the client's header unchanged: UTF-8.
    susan = add_user('zoë🙂', 'pässwörd')
    rv = client.get('/api/users/me', basic=('zoë🙂', 'pässwörd'))
    assert rv.status == 200
    assert rv.json['id'] == susan


def test_login_failures(client, add_user, rows, token):
    susan = add_user('susan', 'dog', online=False, last_seen_at=1000)
    before = rows()
    encoded = base64.b64encode(b'susan:dog').decode()
    for headers in (
            {},
            {'Authorization': 'Basic'},
            {'Authorization': 'Basic '},
            {'Authorization': 'Basic xyz'},
            {'Authorization': 'Basic !!!'},
            {'Authorization': 'Basic ' + base64.b64encode(b'susan').decode()},
            {'Authorization': 'Basic ' + base64.b64encode(b':dog').decode()},
            {'Authorization': 'Basic ' + base64.b64encode(b'susan:').decode()},
            {'Authorization': 'Bearer ' + encoded},   # not the Basic scheme
            {'Authorization': 'Digest ' + encoded},
            {'Authorization': 'Bearer ' + token(susan)},
            {'Authorization': 'garbage'}):
        assert_401(client.get('/api/users/me', headers=headers))
    for credentials in (('susan', 'cat'), ('SUSAN', 'dog'), ('susan ', 'dog'),
                        ('david', 'dog'), ('susan', 'dog ')):
        assert_401(client.get('/api/users/me', basic=credentials))
    assert rows() == before


def test_login_scheme_is_case_insensitive(client, add_user):
    add_user('susan', 'dog')
    encoded = base64.b64encode(b'susan:dog').decode()
    rv = client.get('/api/users/me', headers={'Authorization': 'basic '
                                              + encoded})
    assert rv.status == 200


def test_ping_marks_online(client, add_user, token, rows, pusher):
    susan = add_user('susan', online=False, last_seen_at=1000)
    before = timestamp()
    rv = client.put('/api/users/me', token=token(susan))
    assert rv.status == 204
    assert rv.data == b''
    [row] = rows()
    assert row['online'] is True
    assert row['last_seen_at'] >= before
    assert len(pusher.pushes) == 1
    assert pusher.pushes[0][1]['online'] is True


def test_sign_off_marks_offline_in_one_push(client, add_user, token, rows,
                                            pusher):
    susan = add_user('susan', online=False, last_seen_at=1000)
    rv = client.delete('/api/users/me', token=token(susan))
    assert rv.status == 204
    assert rows()[0]['online'] is False
    # No "online" flash before the "offline": a single push, offline.
    assert [model['online'] for _, model in pusher.pushes] == [False]


def test_sign_off_after_ping(client, add_user, token, rows, pusher):
    susan = add_user('susan')
    assert client.put('/api/users/me', token=token(susan)).status == 204
    assert rows()[0]['online'] is True
    pusher.pushes.clear()
    assert client.delete('/api/users/me', token=token(susan)).status == 204
    assert rows()[0]['online'] is False
    assert all(model['online'] is False for _, model in pusher.pushes)


def test_me_endpoints_require_a_token(client, add_user, rows):
    add_user('susan', 'dog', online=True, last_seen_at=1000)
    before = rows()
    for method in ('put', 'delete'):
        assert_401(getattr(client, method)('/api/users/me'))
        assert_401(getattr(client, method)('/api/users/me',
                                           basic=('susan', 'dog')))
    assert rows() == before


def test_any_valid_token_marks_its_user_seen(client, add_user, token, rows,
                                             pusher):
    susan = add_user('susan', online=False, last_seen_at=1000)
    david = add_user('david', online=False, last_seen_at=1000)
    rv = client.get(f'/api/users/{david}', token=token(susan))
    assert rv.status == 200
    susan_row, david_row = rows()
    assert susan_row['online'] is True and susan_row['last_seen_at'] > 1000
    assert david_row['online'] is False and david_row['last_seen_at'] == 1000
    assert [(name, model['id'], model['online'])
            for name, model in pusher.pushes] == [('User', susan, True)]


def test_seen_state_is_visible_in_the_same_request(client, add_user, token):
    susan = add_user('susan', online=False, last_seen_at=1000)
    rv = client.get('/api/users?online=1', token=token(susan))
    assert [user['id'] for user in rv.json['users']] == [susan]


def test_a_burst_of_requests_writes_once_per_second(client, add_user, token,
                                                    rows, pusher, clock):
    susan = add_user('susan', online=False, last_seen_at=1000)
    for _ in range(5):
        assert client.get('/api/users', token=token(susan)).status == 200
        assert client.put('/api/users/me', token=token(susan)).status == 204
    assert len(pusher.pushes) == 1
    updated_at = rows()[0]['updated_at']
    assert rows()[0]['last_seen_at'] == clock.now

    clock.now += 1
    assert client.get('/api/users', token=token(susan)).status == 200
    assert len(pusher.pushes) == 2
    assert rows()[0]['last_seen_at'] == clock.now
    assert rows()[0]['updated_at'] >= updated_at


def test_revoked_tokens_are_refused(client, add_user, token, etcd, rows):
    susan = add_user('susan', online=False, last_seen_at=1000)
    revoked = token(susan)
    etcd.put_expiring('/revoked-tokens/' + revoked, '', 3600)
    before = rows()
    assert_401(client.get('/api/users', token=revoked))
    assert_401(client.get(f'/api/users/{susan}', token=revoked))
    assert_401(client.put('/api/users/me', token=revoked))
    assert_401(client.delete('/api/users/me', token=revoked))
    assert_401(client.put(f'/api/users/{susan}', {'nickname': 'x'},
                          token=revoked))
    assert rows() == before
    assert ('get', '/revoked-tokens/' + revoked) in etcd.calls
    # Another token of the same user still works.
    other = token(susan, expires_in=1800)
    assert client.put('/api/users/me', token=other).status == 204


def bad_tokens(app, user_id):
    payload = {'user_id': user_id, 'exp': int(time.time()) + 600}
    return [
        'abc',
        'a.b.c',
        '',
        jwt.encode(payload, 'another-key-that-is-32-bytes-long!',
                   algorithm='HS256'),
        jwt.encode(payload, None, algorithm='none'),
        jwt.encode({'user_id': user_id, 'exp': int(time.time()) - 10},
                   app.config['JWT_SECRET_KEY'], algorithm='HS256'),
        jwt.encode({'user_id': str(user_id), 'exp': int(time.time()) + 600},
                   app.config['JWT_SECRET_KEY'], algorithm='HS256'),
        jwt.encode({'exp': int(time.time()) + 600},
                   app.config['JWT_SECRET_KEY'], algorithm='HS256'),
    ]


def test_bad_tokens_are_refused_everywhere(app, client, add_user, rows):
    susan = add_user('susan', online=False, last_seen_at=1000)
    before = rows()
    headers_list = [{'Authorization': 'Bearer ' + bad}
                    for bad in bad_tokens(app, susan)]
    headers_list += [{'Authorization': 'Bearer'},
                     {'Authorization': 'Basic xyz'},
                     {'Authorization': 'Basic !!!'},
                     {'Authorization': 'garbage'},
                     {'Authorization': ''}]
    for headers in headers_list:
        for method, url, body in (
                ('GET', '/api/users', None),
                ('GET', f'/api/users/{susan}', None),
                ('PUT', f'/api/users/{susan}', {'nickname': 'hacked'}),
                ('PUT', '/api/users/me', None),
                ('DELETE', '/api/users/me', None)):
            rv = client.request(method, url, body, headers=headers)
            assert rv.status == 401, (headers, method, url, rv)
            assert rv.headers['WWW-Authenticate'] == CHALLENGE
            assert rv.json['error']
    assert rows() == before


def test_tokens_for_missing_users_crash_nothing(client, add_user, token,
                                                rows):
    susan = add_user('susan', online=False, last_seen_at=1000)
    before = rows()
    # An id no row can have is no valid token at all (issue 19, finding 4).
    for impossible in (2 ** 31, 2 ** 62, 10 ** 30, 0, -1):
        bad = token(impossible)
        assert_401(client.get('/api/users', token=bad))
        assert_401(client.put('/api/users/me', token=bad))
        assert_401(client.put(f'/api/users/{susan}', {'nickname': 'hacked'},
                              token=bad))
    for ghost in (susan + 1000,):
        ghost_token = token(ghost)
        assert client.get('/api/users', token=ghost_token).status == 200
        assert client.get(f'/api/users/{susan}',
                          token=ghost_token).status == 200
        assert_401(client.put('/api/users/me', token=ghost_token))
        assert_401(client.delete('/api/users/me', token=ghost_token))
        rv = client.put(f'/api/users/{susan}', {'nickname': 'hacked'},
                        token=ghost_token)
        assert rv.status == 403
    assert rows() == before
