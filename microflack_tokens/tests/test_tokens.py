import time

import jwt
import requests

from microflack_common.testing import FakeResponse, make_token
from microflack_common.tokens import decode_token

USERS_ME = ('GET', '/api/users/me')


def users_me_answering(status, body=None):
    def handler(headers=None, **kwargs):
        return FakeResponse(status, body)
    return handler


def test_new_token_relays_credentials(app, client, http):
    http.routes[USERS_ME] = users_me_answering(200, {'id': 42})
    rv = client.post('/api/tokens', basic=('susan', 'dog'))
    assert rv.status == 200
    claims = decode_token(rv.json['token'], app.config['JWT_SECRET_KEY'])
    assert claims['user_id'] == 42
    assert abs(claims['exp'] - (time.time() + 3600)) < 5
    method, url, kwargs = http.calls[0]
    assert (method, url) == USERS_ME
    assert kwargs['headers']['Authorization'].startswith('Basic ')


def test_new_token_passes_unicode_nicknames_through(client, http):
    http.routes[USERS_ME] = users_me_answering(200, {'id': 1})
    rv = client.post('/api/tokens', basic=('zoë🙂', 'pässword'))
    assert rv.status == 200


def test_new_token_bad_credentials(client, http):
    http.routes[USERS_ME] = users_me_answering(401, {'error': 'x'})
    rv = client.post('/api/tokens', basic=('susan', 'cat'))
    assert rv.status == 401
    assert rv.headers['WWW-Authenticate'] == \
        'Bearer realm="Authentication Required"'
    assert rv.json == {'error': 'authentication required'}


def test_new_token_without_credentials(client, http):
    for headers in ({}, {'Authorization': 'Basic'},
                    {'Authorization': 'Basic !!!notbase64'},
                    {'Authorization': 'Bearer abc'}):
        rv = client.post('/api/tokens', headers=headers)
        assert rv.status == 401, headers
        assert rv.json['error']
    assert http.calls == []


def test_new_token_users_service_down(client, http):
    http.routes[USERS_ME] = requests.ConnectionError('refused')
    rv = client.post('/api/tokens', basic=('susan', 'dog'))
    assert rv.status == 503
    assert 'users service' in rv.json['error']


def test_new_token_users_service_garbled(client, http):
    http.routes[USERS_ME] = users_me_answering(200, None)
    rv = client.post('/api/tokens', basic=('susan', 'dog'))
    assert rv.status == 502


def test_check_token(app, client):
    token = make_token(app, 7)
    rv = client.get('/api/tokens', token=token)
    assert rv.status == 200
    assert rv.json['user_id'] == 7
    assert client.get('/api/tokens').status == 401
    assert client.get('/api/tokens', token=token + 'x').status == 401


def test_check_expired_and_forged_tokens(app, client):
    expired = make_token(app, 7, expires_in=-10)
    assert client.get('/api/tokens', token=expired).status == 401
    forged = jwt.encode({'user_id': 7, 'exp': time.time() + 60},
                        'another-key-that-is-32-bytes-long', algorithm='HS256')
    assert client.get('/api/tokens', token=forged).status == 401
    unsigned = jwt.encode({'user_id': 7, 'exp': time.time() + 60}, None,
                          algorithm='none')
    assert client.get('/api/tokens', token=unsigned).status == 401


def test_revoke_token(app, client, etcd):
    token = make_token(app, 7)
    rv = client.delete('/api/tokens', token=token)
    assert rv.status == 204
    key = '/revoked-tokens/' + token
    # The key says until when, and its lease ends then.
    assert 3600 < float(etcd.get_value(key)) - time.time() <= 3600 + 6
    assert 3600 < etcd.ttl(key) <= 3600 + 6
    assert client.get('/api/tokens', token=token).status == 401
    assert client.delete('/api/tokens', token=token).status == 401


def test_revocation_seen_by_another_instance(app, client, etcd, http):
    from microflack_common.testing import ApiClient
    from microflack_tokens.app import create_app
    from microflack_tokens.config import TestConfig
    other = ApiClient(create_app(TestConfig, etcd=etcd, http=http))
    token = make_token(app, 7)
    assert other.get('/api/tokens', token=token).status == 200
    client.delete('/api/tokens', token=token)
    other.app.extensions['microflack'].revocations.cache_seconds = 0
    assert other.get('/api/tokens', token=token).status == 401


def test_etcd_down_accepts_valid_tokens(app, client, etcd, caplog):
    etcd.down = True
    token = make_token(app, 7)
    rv = client.get('/api/tokens', token=token)
    assert rv.status == 200
    assert 'cannot check token revocations' in caplog.text


def test_revoke_with_etcd_down_is_503_not_500(app, client, etcd):
    etcd.down = True
    rv = client.delete('/api/tokens', token=make_token(app, 7))
    assert rv.status == 503
    assert rv.json['error']


def test_health(client):
    rv = client.get('/health')
    assert rv.status == 200
    assert rv.json['service'] == 'tokens'


# -- log out everywhere (issue 20 item 9; the mechanism of issue 19's
# finding 2) --

def test_revoke_all_tokens_of_the_user(app, client, etcd):
    first, second = make_token(app, 7), make_token(app, 7)
    someone_else = make_token(app, 8)
    rv = client.delete('/api/tokens/all', token=first)
    assert rv.status == 204 and rv.data == b''
    # One key for the user, however many tokens it had.
    assert float(etcd.get_value('/revoked-users/7')) <= time.time() + 0.001
    assert 3600 < etcd.ttl('/revoked-users/7') <= 3600 + 6
    assert etcd.get_value('/revoked-tokens/' + first) is None
    for token in (first, second):
        assert client.get('/api/tokens', token=token).status == 401
    assert client.get('/api/tokens', token=someone_else).status == 200
    time.sleep(0.002)       # a later millisecond: a new login
    assert client.get('/api/tokens', token=make_token(app, 7)).status == 200


def test_revoke_all_needs_a_valid_token(app, client, etcd):
    assert client.delete('/api/tokens/all').status == 401
    assert client.delete('/api/tokens/all', token='garbage').status == 401
    assert etcd.get_prefix('/revoked-users/').kvs == []


def test_revoke_all_with_etcd_down_is_503(app, client, etcd):
    token = make_token(app, 7)
    etcd.down = True
    rv = client.delete('/api/tokens/all', token=token)
    assert rv.status == 503
    assert rv.json['error']
    etcd.down = False
    assert client.get('/api/tokens', token=token).status == 200
