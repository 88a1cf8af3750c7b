"""Bad input gets a 4xx JSON error, never a 500, and changes nothing."""
import time

import jwt
import pytest


@pytest.fixture
def unchanged(rows, pusher, add_message):
    """A stored message; afterwards, the table and pushes must be as
    they were."""
    message_id = add_message('original', user_id=1)
    before = rows()
    yield message_id
    assert rows() == before
    assert pusher.pushes == []


def assert_error(rv, status):
    assert rv.status == status, rv
    assert isinstance(rv.json, dict) and isinstance(rv.json['error'], str)
    assert b'Traceback' not in rv.data


BAD_BODIES = [
    ('not json', 'application/json'),
    ('{"source": ', 'application/json'),
    ('[]', 'application/json'),
    ('["source"]', 'application/json'),
    ('"source"', 'application/json'),
    ('42', 'application/json'),
    ('null', 'application/json'),
    ('{}', 'application/json'),
    ('{"text": "hi"}', 'application/json'),
    ('{"source": null}', 'application/json'),
    ('{"source": 42}', 'application/json'),
    ('{"source": true}', 'application/json'),
    ('{"source": ["hi"]}', 'application/json'),
    ('{"source": {"a": 1}}', 'application/json'),
    ('{"source": ""}', 'application/json'),
    ('{"source": "   \\n\\t "}', 'application/json'),
    ('{"source": "\\ud800"}', 'application/json'),
    ('{"source": "hi"}', 'text/plain'),
    ('source=hi', 'application/x-www-form-urlencoded'),
    (b'\xff\xfe\x00', 'application/json'),
    # Nested past the recursion limit (issue 19, finding 3: it was a 500).
    ('[' * 5000 + ']' * 5000, 'application/json'),
    ('{"source": ' + '[' * 3000 + ']' * 3000 + '}', 'application/json'),
]


@pytest.mark.parametrize('body,content_type', BAD_BODIES)
def test_bad_post_bodies(client, token, unchanged, body, content_type):
    rv = client.post('/api/messages', raw=body, content_type=content_type,
                     token=token())
    assert_error(rv, 400)


@pytest.mark.parametrize('body,content_type', BAD_BODIES)
def test_bad_edit_bodies(client, token, unchanged, body, content_type):
    rv = client.put(f'/api/messages/{unchanged}', raw=body,
                    content_type=content_type, token=token())
    assert_error(rv, 400)


def test_post_without_body(client, token, unchanged):
    assert_error(client.post('/api/messages', token=token()), 400)
    assert_error(client.put(f'/api/messages/{unchanged}', token=token()), 400)


def test_source_too_long(app, client, token, unchanged):
    source = 'x' * (app.config['MAX_MESSAGE_LENGTH'] + 1)
    rv = client.post('/api/messages', {'source': source}, token=token())
    assert_error(rv, 400)
    assert '10000' in rv.json['error']
    rv = client.put(f'/api/messages/{unchanged}', {'source': source},
                    token=token())
    assert_error(rv, 400)


def test_body_too_large(client, token, unchanged):
    rv = client.post('/api/messages', {'source': 'x' * 300_000},
                     token=token())
    assert_error(rv, 413)


@pytest.mark.parametrize('value', [
    'abc', '1.5', '1e3', '0x10', '--1', '99999999999999999999',
    str(2 ** 53 + 1), '1 2',
])
def test_bad_updated_since(client, unchanged, value):
    rv = client.get(f'/api/messages?updated_since={value}')
    assert_error(rv, 400)
    assert 'updated_since' in rv.json['error']


def forged_tokens(app):
    now = time.time()
    claims = {'user_id': 1, 'exp': now + 600}
    return {
        'expired': jwt.encode({'user_id': 1, 'exp': now - 10},
                              app.config['JWT_SECRET_KEY'], algorithm='HS256'),
        'wrong key': jwt.encode(claims, 'another-key-that-is-32-bytes-long!',
                                algorithm='HS256'),
        'alg none': jwt.encode(claims, None, algorithm='none'),
        'no user': jwt.encode({'exp': now + 600},
                              app.config['JWT_SECRET_KEY'], algorithm='HS256'),
        'string user': jwt.encode({'user_id': '1', 'exp': now + 600},
                                  app.config['JWT_SECRET_KEY'],
                                  algorithm='HS256'),
        'garbage': 'not.a.token',
        # Signed with the platform's key, with claims no token can have
        # (issue 19, finding 4: a user_id past 2**31 answered 500, an exp
        # of NaN or Infinity never expired).
        **{f'user {user_id}': jwt.encode(
            {'user_id': user_id, 'exp': now + 600},
            app.config['JWT_SECRET_KEY'], algorithm='HS256')
           for user_id in (2 ** 31, 0, -1)},
        **{f'exp {exp}': jwt.encode(
            {'user_id': 1, 'exp': exp}, app.config['JWT_SECRET_KEY'],
            algorithm='HS256') for exp in (float('nan'), float('inf'))},
    }


BAD_HEADERS = ['Bearer', 'Bearer ', 'Bearer a b c', 'Basic c3VzYW46ZG9n',
               'Token abc', 'bearer', 'garbage', 'Bearer \u00e9t\u00e9']


def test_bad_tokens_refused_everywhere(app, client, unchanged):
    url = f'/api/messages/{unchanged}'
    for name, bad in forged_tokens(app).items():
        for rv in (client.post('/api/messages', {'source': 'x'}, token=bad),
                   client.put(url, {'source': 'x'}, token=bad),
                   client.get('/api/messages', token=bad),
                   client.get(url, token=bad)):
            assert_error(rv, 401)
            assert rv.headers['WWW-Authenticate'] == \
                'Bearer realm="Authentication Required"', name


@pytest.mark.parametrize('header', BAD_HEADERS)
def test_malformed_authorization_headers(client, unchanged, header):
    url = f'/api/messages/{unchanged}'
    headers = {'Authorization': header}
    for rv in (client.post('/api/messages', {'source': 'x'}, headers=headers),
               client.put(url, {'source': 'x'}, headers=headers),
               client.get('/api/messages', headers=headers),
               client.get(url, headers=headers)):
        assert_error(rv, 401)


def test_revoked_token_refused(client, token, etcd, unchanged):
    revoked = token(4242, expires_in=1234)
    assert client.get('/api/messages', token=revoked).status == 200
    etcd.put_expiring('/revoked-tokens/' + revoked, '', 60)
    url = f'/api/messages/{unchanged}'
    for rv in (client.post('/api/messages', {'source': 'x'}, token=revoked),
               client.put(url, {'source': 'x'}, token=revoked),
               client.get('/api/messages', token=revoked),
               client.get(url, token=revoked)):
        assert_error(rv, 401)
    assert client.get('/api/messages', token=token(4243)).status == 200


def test_etcd_down_still_accepts_valid_tokens(client, token, etcd):
    etcd.down = True
    rv = client.post('/api/messages', {'source': 'hi'}, token=token())
    assert rv.status == 201
