"""The /api/users endpoints: statuses, headers, JSON shapes, filters,
ordering and the pushes each write makes."""
import itertools
import time

import pytest
from werkzeug.security import check_password_hash

from microflack_common.utils import timestamp

USER_KEYS = {'id', 'created_at', 'updated_at', 'nickname', 'last_seen_at',
             'online', '_links'}


def register(client, nickname='susan', password='dog'):
    rv = client.post('/api/users', {'nickname': nickname,
                                    'password': password})
    assert rv.status == 201, rv
    return rv.json


def assert_user_json(body, user_id, nickname):
    assert set(body) == USER_KEYS
    assert body['id'] == user_id
    assert body['nickname'] == nickname
    for key in ('created_at', 'updated_at', 'last_seen_at'):
        assert isinstance(body[key], int) and not isinstance(body[key], bool)
    assert isinstance(body['online'], bool)
    assert body['_links'] == {'self': f'/api/users/{user_id}',
                              'messages': f'/api/messages/{user_id}',
                              'tokens': '/api/tokens'}


def test_register(client, rows, pusher):
    before = timestamp()
    rv = client.post('/api/users', {'nickname': 'susan', 'password': 'dog'})
    assert rv.status == 201
    user_id = rv.json['id']
    assert rv.headers['Location'] == f'/api/users/{user_id}'
    assert_user_json(rv.json, user_id, 'susan')
    assert rv.json['online'] is False
    assert before <= rv.json['created_at'] <= rv.json['updated_at'] \
        <= timestamp()
    [row] = rows()
    assert row['nickname'] == 'susan'
    assert row['password_hash'] != 'dog'
    assert check_password_hash(row['password_hash'], 'dog')
    assert pusher.pushes == [('User', rv.json)]


def test_a_new_user_has_one_time(client, rows, monkeypatch):
    """A new user's three times are one clock reading (here every reading
    of the clock is a second later)."""
    ticks = itertools.count(int(time.time()))
    monkeypatch.setattr(time, 'time', lambda: next(ticks))
    rv = client.post('/api/users', {'nickname': 'tick', 'password': 'dog'})
    assert rv.status == 201
    assert rv.json['created_at'] == rv.json['updated_at'] == \
        rv.json['last_seen_at']


def test_register_strips_the_nickname_and_keeps_unicode(client):
    assert register(client, '  zoë🙂  ', 'pässword')['nickname'] == 'zoë🙂'
    assert register(client, 'n' * 32)['nickname'] == 'n' * 32
    assert register(client, '🙂' * 32)['nickname'] == '🙂' * 32


def test_different_nicknames_stay_different(client, rows):
    # Databases whose collations fold accents or emoji must not merge these.
    for nickname in ('susan', 'süsan', 'sùsan', '🙂', '😀', 'ß'):
        register(client, nickname)
    assert len(rows()) == 6


@pytest.mark.parametrize('lookalike', [
    'Susan', 'SUSAN', 'ｓｕｓａｎ', 'ＳＵＳＡＮ',   # case, fullwidth forms
    '\u017fusan',                                 # long s
])
def test_a_nickname_that_looks_taken_is_taken(client, rows, lookalike):
    """Issue 19, finding 9: nicknames compare as NFKC, case-folded."""
    register(client, 'susan')
    before = rows()
    rv = client.post('/api/users', {'nickname': lookalike, 'password': 'x'})
    assert rv.status == 400
    assert rv.json == {'error': 'nickname is already taken'}
    assert rows() == before


def test_normalised_forms_of_accents_are_one_nickname(client):
    register(client, 's\u00fcsan')                 # ü, one code point
    rv = client.post('/api/users', {'nickname': 'su\u0308san',  # u + ¨
                                    'password': 'x'})
    assert rv.status == 400
    register(client, 'STRASSE')
    assert client.post('/api/users', {'nickname': 'straße',
                                      'password': 'x'}).status == 400


def test_a_rename_to_a_lookalike_of_another_is_refused(client, token,
                                                      add_user):
    susan, david = add_user('susan'), add_user('david')
    rv = client.put(f'/api/users/{david}', {'nickname': 'SUSAN'},
                    token=token(david))
    assert rv.status == 400
    assert client.get(f'/api/users/{david}').json['nickname'] == 'david'
    # One's own nickname in another case is one's own.
    rv = client.put(f'/api/users/{susan}', {'nickname': 'Susan'},
                    token=token(susan))
    assert rv.status == 204
    assert client.get(f'/api/users/{susan}').json['nickname'] == 'Susan'


def test_a_nickname_too_long_once_normalised_is_refused(client, rows):
    # U+FDFA (one character) is 18 once NFKC-normalised.
    rv = client.post('/api/users', {'nickname': '\ufdfa' * 32,
                                    'password': 'x'})
    assert rv.status == 400
    assert 'normalised' in rv.json['error']
    assert rows() == []


def test_register_duplicate_nickname(client, rows):
    register(client, 'susan')
    before = rows()
    rv = client.post('/api/users', {'nickname': 'susan', 'password': 'cat'})
    assert rv.status == 400
    assert rv.json == {'error': 'nickname is already taken'}
    rv = client.post('/api/users', {'nickname': ' susan ', 'password': 'x'})
    assert rv.status == 400
    assert rows() == before


def test_register_missing_fields(client, rows):
    for body in ({}, {'nickname': 'susan'}, {'password': 'dog'}):
        rv = client.post('/api/users', body)
        assert rv.status == 400, body
        assert 'required' in rv.json['error']
    assert rows() == []


def test_users_list(client, token, add_user):
    susan = add_user('susan')
    david = add_user('david')
    rv = client.get('/api/users')
    assert rv.status == 200
    assert set(rv.json) == {'users'}
    by_id = {user['id']: user for user in rv.json['users']}
    assert set(by_id) == {susan, david}
    assert_user_json(by_id[susan], susan, 'susan')
    assert client.get('/api/users', token=token(susan)).status == 200


def test_users_list_empty(client):
    rv = client.get('/api/users')
    assert rv.status == 200
    assert rv.json == {'users': []}


def test_users_list_order_and_filters(client, add_user):
    add_user('bob', updated_at=200, online=True)
    add_user('amy', updated_at=200, online=False)
    add_user('cid', updated_at=100, online=True)
    add_user('dan', updated_at=300, online=False)

    def nicknames(query=''):
        rv = client.get('/api/users' + query)
        assert rv.status == 200, rv
        return [user['nickname'] for user in rv.json['users']]

    # updated_at first, nickname to break ties
    assert nicknames() == ['cid', 'amy', 'bob', 'dan']
    assert nicknames('?online=1') == ['cid', 'bob']
    assert nicknames('?online=true') == ['cid', 'bob']
    assert nicknames('?online=0') == ['amy', 'dan']
    # updated_since answers a page of the changes feed (issue 14), whose
    # ties are broken by id, the cursor's order: bob was stored before amy.
    assert nicknames('?updated_since=200') == ['bob', 'amy', 'dan']
    assert nicknames('?updated_since=201') == ['dan']
    assert nicknames('?updated_since=301') == []
    assert nicknames('?updated_since=-5') == ['cid', 'bob', 'amy', 'dan']
    assert nicknames('?updated_since=200&online=1') == ['bob']
    assert nicknames('?online=&updated_since=') == ['cid', 'amy', 'bob',
                                                     'dan']


def test_get_user(client, token, add_user):
    susan = add_user('susan')
    rv = client.get(f'/api/users/{susan}')
    assert rv.status == 200
    assert_user_json(rv.json, susan, 'susan')
    rv = client.get(f'/api/users/{susan}', token=token(susan))
    assert rv.status == 200


def test_get_unknown_user(client, add_user):
    susan = add_user('susan')
    for url in (f'/api/users/{susan + 1}', '/api/users/0',
                '/api/users/9007199254740993',
                '/api/users/99999999999999999999999999'):
        rv = client.get(url)
        assert rv.status == 404, url
        assert rv.json == {'error': 'user not found'}


def test_non_integer_ids_are_not_found(client, token, add_user, rows):
    susan = add_user('susan')
    before = rows()
    for url in ('/api/users/abc', '/api/users/-1', '/api/users/1.5',
                '/api/users/%20'):
        rv = client.get(url)
        assert rv.status == 404, url
        assert rv.json['error']
        rv = client.put(url, {'nickname': 'x'}, token=token(susan))
        assert rv.status in (404, 405), url
        assert rv.json['error']
    assert rows()[0]['nickname'] == before[0]['nickname']


def test_edit_own_nickname(client, token, add_user, pusher):
    susan = add_user('susan')
    rv = client.put(f'/api/users/{susan}', {'nickname': 'suzy'},
                    token=token(susan))
    assert rv.status == 204
    assert rv.data == b''
    assert client.get(f'/api/users/{susan}').json['nickname'] == 'suzy'
    assert pusher.pushes[-1][0] == 'User'
    assert pusher.pushes[-1][1]['nickname'] == 'suzy'
    assert pusher.pushes[-1][1]['id'] == susan


def test_edit_keeps_the_same_nickname(client, token, add_user):
    susan = add_user('susan')
    rv = client.put(f'/api/users/{susan}', {'nickname': 'susan'},
                    token=token(susan))
    assert rv.status == 204


def test_edit_own_password(client, token, add_user, rows):
    susan = add_user('susan', 'dog')
    old_hash = rows()[0]['password_hash']
    rv = client.put(f'/api/users/{susan}', {'password': 'cat',
                                            'current_password': 'dog'},
                    token=token(susan))
    assert rv.status == 204
    new_hash = rows()[0]['password_hash']
    assert new_hash != old_hash and check_password_hash(new_hash, 'cat')
    assert client.get('/api/users/me', basic=('susan', 'cat')).status == 200
    assert client.get('/api/users/me', basic=('susan', 'dog')).status == 401


def test_edit_both(client, token, add_user):
    susan = add_user('susan', 'dog')
    rv = client.put(f'/api/users/{susan}', {'nickname': 'suzy',
                                            'password': 'cat',
                                            'current_password': 'dog'},
                    token=token(susan))
    assert rv.status == 204
    assert client.get('/api/users/me', basic=('suzy', 'cat')).status == 200


def credentials(rows):
    return [(row['nickname'], row['password_hash']) for row in rows]


@pytest.mark.parametrize('body, status', [
    ({'password': 'cat'}, 400),
    ({'password': 'cat', 'current_password': 'wrong'}, 403),
    ({'password': 'cat', 'current_password': 5}, 400),
    ({'nickname': 'suzy', 'password': 'cat'}, 400),
])
def test_a_password_change_needs_the_current_password(
        client, token, add_user, rows, etcd, body, status):
    """Issue 19, finding 2: a stolen token alone does not take over the
    account. Nothing changes (the nickname neither)."""
    susan = add_user('susan', 'dog')
    before = credentials(rows())
    rv = client.put(f'/api/users/{susan}', body, token=token(susan))
    assert rv.status == status
    assert rv.json['error']
    assert credentials(rows()) == before
    assert etcd.get_prefix('/revoked-users/').kvs == []
    assert client.get('/api/users/me', basic=('susan', 'dog')).status == 200


def test_a_password_change_ends_every_token_of_the_user(
        app, client, token, add_user, etcd):
    """Issue 19, finding 2: the tokens given out with the old password
    stop working (one revocation for the user), others' do not."""
    susan, david = add_user('susan', 'dog'), add_user('david')
    first, second, davids = token(susan), token(susan), token(david)
    rv = client.put(f'/api/users/{susan}', {'password': 'cat',
                                            'current_password': 'dog'},
                    token=first)
    assert rv.status == 204
    assert etcd.get_value(f'/revoked-users/{susan}') is not None
    for old in (first, second):
        assert client.put('/api/users/me', token=old).status == 401
    assert client.put('/api/users/me', token=davids).status == 204
    time.sleep(0.002)       # a later millisecond: logging in again
    assert client.put('/api/users/me', token=token(susan)).status == 204


def test_a_nickname_change_keeps_the_tokens(client, token, add_user, etcd):
    susan = add_user('susan')
    mine = token(susan)
    rv = client.put(f'/api/users/{susan}', {'nickname': 'suzy'}, token=mine)
    assert rv.status == 204
    assert etcd.get_prefix('/revoked-users/').kvs == []
    assert client.put('/api/users/me', token=mine).status == 204


def test_a_password_change_etcd_cannot_record_is_not_made(
        client, token, add_user, rows, etcd):
    susan = add_user('susan', 'dog')
    mine = token(susan)
    client.put('/api/users/me', token=mine)      # checked while etcd is up
    before = credentials(rows())
    etcd.down = True
    rv = client.put(f'/api/users/{susan}', {'password': 'cat',
                                            'current_password': 'dog',
                                            'nickname': 'suzy'},
                    token=mine)
    assert rv.status == 503
    assert rv.json['error']
    etcd.down = False
    assert credentials(rows()) == before
    assert client.get('/api/users/me', basic=('susan', 'dog')).status == 200


def test_edit_someone_else(client, token, add_user, rows):
    susan = add_user('susan')
    david = add_user('david')
    before = rows()
    rv = client.put(f'/api/users/{susan}', {'nickname': 'evil'},
                    token=token(david))
    assert rv.status == 403
    assert rv.json['error']
    assert [row['nickname'] for row in rows()] == \
        [row['nickname'] for row in before]


def test_edit_unknown_user(client, token, add_user):
    susan = add_user('susan')
    rv = client.put(f'/api/users/{susan + 1}', {'nickname': 'x'},
                    token=token(susan))
    assert rv.status == 404
    assert rv.json == {'error': 'user not found'}


def test_edit_requires_a_token(client, add_user, rows):
    susan = add_user('susan', 'dog')
    before = rows()
    rv = client.put(f'/api/users/{susan}', {'nickname': 'x'})
    assert rv.status == 401
    assert rv.headers['WWW-Authenticate'] == \
        'Bearer realm="Authentication Required"'
    rv = client.put(f'/api/users/{susan}', {'nickname': 'x'},
                    basic=('susan', 'dog'))
    assert rv.status == 401
    assert rows() == before


def test_edit_to_a_taken_nickname(client, token, add_user):
    susan = add_user('susan')
    add_user('david')
    rv = client.put(f'/api/users/{susan}', {'nickname': 'david'},
                    token=token(susan))
    assert rv.status == 400
    assert rv.json == {'error': 'nickname is already taken'}
    assert client.get(f'/api/users/{susan}').json['nickname'] == 'susan'


def test_health(client):
    rv = client.get('/health')
    assert rv.status == 200
    assert rv.json['service'] == 'users'
    assert rv.json['version'] == 'test'
