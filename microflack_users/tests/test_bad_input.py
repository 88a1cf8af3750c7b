"""Whatever a client sends, the answer is a 4xx JSON error, never a 500,
and nothing stored changes."""
import pytest

BAD_BODIES = [
    # (raw body, content type)
    ('not json', 'application/json'),
    ('{"nickname": "susan", ', 'application/json'),
    ('[1, 2]', 'application/json'),
    ('"susan"', 'application/json'),
    ('42', 'application/json'),
    ('null', 'application/json'),
    ('', 'application/json'),
    ('{"nickname": "susan", "password": "dog"}', 'text/plain'),
    ('\xff\xfe', 'application/json'),
    # Nested past the recursion limit (issue 19, finding 3: it was a 500).
    ('[' * 5000 + ']' * 5000, 'application/json'),
    ('{"nickname": ' + '[' * 3000 + ']' * 3000 + '}', 'application/json'),
]

BAD_FIELDS = [
    {'nickname': 5, 'password': 'dog'},
    {'nickname': ['susan'], 'password': 'dog'},
    {'nickname': {'a': 1}, 'password': 'dog'},
    {'nickname': True, 'password': 'dog'},
    {'nickname': 'susan', 'password': None},
    {'nickname': 'susan', 'password': 123},
    {'nickname': None, 'password': 'dog'},
    {'nickname': '', 'password': 'dog'},
    {'nickname': '   ', 'password': 'dog'},
    {'nickname': '\t\n', 'password': 'dog'},
    {'nickname': 'n' * 33, 'password': 'dog'},
    {'nickname': '🙂' * 33, 'password': 'dog'},
    {'nickname': 'susan', 'password': ''},
    {'nickname': 'su:san', 'password': 'dog'},
    {'nickname': 'su\x00san', 'password': 'dog'},
    {'nickname': 'su\x1bsan', 'password': 'dog'},
    # Format characters make lookalikes of other nicknames (issue 19,
    # finding 9): a zero-width space, a right-to-left override, a BOM.
    {'nickname': 'susan\u200b', 'password': 'dog'},
    {'nickname': 'su\u202esan', 'password': 'dog'},
    {'nickname': '\ufeffsusan', 'password': 'dog'},
    # Passwords are bounded (they are hashed on every login).
    {'nickname': 'longpass', 'password': 'p' * 1025},
]

# Lone surrogates are valid JSON but no database or header can carry them.
SURROGATES = [
    '{"nickname": "su\\ud800san", "password": "dog"}',
    '{"nickname": "susan2", "password": "d\\udfffog"}',
]


@pytest.fixture
def susan(add_user, clock):
    """An online user seen "now" (the frozen clock), so that her token's
    own seen refresh writes nothing and any change would be a bug."""
    return add_user('susan', 'dog', online=True, last_seen_at=clock.now)


def assert_4xx(rv, status=400):
    assert rv.status == status, rv
    assert isinstance(rv.json, dict) and set(rv.json) == {'error'}, rv
    assert isinstance(rv.json['error'], str) and rv.json['error']


def test_register_bad_bodies(client, susan, rows, pusher):
    before = rows()
    for raw, content_type in BAD_BODIES:
        assert_4xx(client.post('/api/users', raw=raw,
                               content_type=content_type))
    for body in BAD_FIELDS:
        assert_4xx(client.post('/api/users', body))
    for raw in SURROGATES:
        assert_4xx(client.post('/api/users', raw=raw))
    assert_4xx(client.post('/api/users', {'nickname': 'susan',
                                          'password': 'x'}))
    assert rows() == before
    assert pusher.pushes == []


def test_edit_bad_bodies(client, susan, token, rows, pusher, add_user):
    add_user('david')
    before = rows()
    url = f'/api/users/{susan}'
    for raw, content_type in BAD_BODIES:
        assert_4xx(client.put(url, raw=raw, content_type=content_type,
                              token=token(susan)))
    for body in BAD_FIELDS:
        if body.get('nickname') is None or body.get('password') is None:
            continue    # a field left out (or null) is simply not changed
        assert_4xx(client.put(url, body, token=token(susan)))
    for body in ({}, {'nickname': None}, {'password': None},
                 {'nickname': None, 'password': None}, {'other': 'x'},
                 {'nickname': 5}, {'nickname': ''}, {'nickname': ' '},
                 {'nickname': 'n' * 33}, {'nickname': 'a:b'},
                 {'password': ''}, {'password': 5},
                 {'password': 'p' * 1025}, {'nickname': 'su\u200bsan'},
                 {'nickname': 'david'}, {'nickname': 'ok', 'password': ''},
                 {'nickname': '', 'password': 'new'}):
        assert_4xx(client.put(url, body, token=token(susan)))
    for raw in SURROGATES:
        assert_4xx(client.put(url, raw=raw, token=token(susan)))
    assert rows() == before
    assert pusher.pushes == []


def test_list_bad_arguments(client, susan, token, rows):
    before = rows()
    for query in ('online=2', 'online=maybe', 'online=-1', 'online=01x',
                  'updated_since=abc', 'updated_since=1e3',
                  'updated_since=1.5', 'updated_since=0x10',
                  'updated_since=99999999999999999999',
                  'updated_since=-99999999999999999999',
                  'updated_since=' + '9' * 5000):
        assert_4xx(client.get('/api/users?' + query))
        assert_4xx(client.get('/api/users?' + query, token=token(susan)))
    assert rows() == before


def test_unknown_and_malformed_ids(client, susan, token, rows):
    before = rows()
    for url in (f'/api/users/{susan + 1}', '/api/users/0',
                '/api/users/9007199254740993', '/api/users/' + '9' * 400,
                '/api/users/abc', '/api/users/-1', '/api/users/1.5',
                '/api/users/1e3', '/api/users/me/x'):
        assert_4xx(client.get(url), 404)
        rv = client.put(url, {'nickname': 'x'}, token=token(susan))
        assert rv.status in (404, 405), (url, rv)
        assert_4xx(rv, rv.status)
    assert rows() == before


def test_wrong_methods(client, susan, token, rows):
    before = rows()
    for method, url in (('DELETE', '/api/users'), ('PUT', '/api/users'),
                        ('POST', f'/api/users/{susan}'),
                        ('DELETE', f'/api/users/{susan}'),
                        ('POST', '/api/users/me')):
        assert_4xx(client.request(method, url, {'nickname': 'x'},
                                  token=token(susan)), 405)
    assert rows() == before


def test_oversized_body(client, susan, rows):
    before = rows()
    rv = client.post('/api/users', raw='{"nickname": "' + 'x' * 300_000
                     + '", "password": "dog"}')
    assert_4xx(rv, 413)
    assert rows() == before


def test_a_login_costs_a_hash_whoever_asks(client, susan, monkeypatch):
    """Issue 19, finding 6: an unknown nickname was answered without
    hashing anything (18 ms against 510 ms), which told who has an
    account: it costs one password check too."""
    from microflack_users import auth
    checked = []
    real = auth.check_password_hash

    def counting(stored, password):
        checked.append(password)
        return real(stored, password)
    monkeypatch.setattr(auth, 'check_password_hash', counting)
    for nickname, password in (('nobody', 'dog'), ('susan', 'cat'),
                               ('susan', 'dog')):
        client.get('/api/users/me', basic=(nickname, password))
    assert checked == ['dog', 'cat', 'dog']
