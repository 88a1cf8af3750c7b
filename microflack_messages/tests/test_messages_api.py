"""The /api/messages endpoints: statuses, headers and JSON shapes."""
import itertools
import time

import pytest
import requests

from microflack_common.testing import FakeResponse
from microflack_messages.models import Message

DAY = 24 * 60 * 60
MESSAGE_KEYS = {'id', 'created_at', 'updated_at', 'source', 'html', 'user_id',
                'edited_at', '_links'}


def test_post_message(client, token, rows, now):
    rv = client.post('/api/messages', {'source': 'hello *world*!'},
                     token=token(7))
    assert rv.status == 201
    message = rv.json
    assert set(message) == MESSAGE_KEYS
    assert rv.headers['Location'] == f"/api/messages/{message['id']}"
    assert message['source'] == 'hello *world*!'
    assert message['html'] == 'hello <em>world</em>!'
    assert message['user_id'] == 7
    assert message['_links'] == {'self': f"/api/messages/{message['id']}",
                                 'user': '/api/users/7'}
    assert isinstance(message['created_at'], int)
    assert now <= message['created_at'] <= now + 2
    assert message['updated_at'] == message['created_at']
    [row] = rows()
    assert row['source'] == 'hello *world*!'
    assert row['html'] == 'hello <em>world</em>!'


def test_a_new_message_has_one_time(client, token, rows, monkeypatch):
    """created_at and updated_at of a new message are one clock reading:
    read twice, they differed whenever a second ended in between (here
    every reading of the clock is a second later)."""
    ticks = itertools.count(int(time.time()))
    monkeypatch.setattr(time, 'time', lambda: next(ticks))
    rv = client.post('/api/messages', {'source': 'tick'}, token=token())
    assert rv.status == 201
    assert rv.json['created_at'] == rv.json['updated_at']
    [row] = rows()
    assert row['created_at'] == row['updated_at']


def test_post_keeps_unicode_and_markup_source(client, token):
    source = 'zoë 🙂 <b>bold</b> `x < y`'
    rv = client.post('/api/messages', {'source': source}, token=token())
    assert rv.status == 201
    assert rv.json['source'] == source
    assert rv.json['html'] == 'zoë 🙂 <b>bold</b> <code>x &lt; y</code>'
    assert client.get(rv.headers['Location']).json['source'] == source


def test_post_message_at_the_length_limit(app, client, token):
    limit = app.config['MAX_MESSAGE_LENGTH']
    assert limit == 10000
    rv = client.post('/api/messages', {'source': 'é' * limit}, token=token())
    assert rv.status == 201
    assert len(rv.json['source']) == limit


def test_post_requires_a_token(client, rows):
    rv = client.post('/api/messages', {'source': 'hi'})
    assert rv.status == 401
    assert rv.headers['WWW-Authenticate'] == \
        'Bearer realm="Authentication Required"'
    assert rv.json == {'error': 'authentication required'}
    assert rows() == []


def test_a_token_of_a_user_nobody_registered_cannot_post(client, token, rows,
                                                        http, pusher):
    """Issue 19, finding 4: a validly signed token (the JWT key leaked)
    for a user the users service does not know is a 401; nothing is
    stored or pushed."""
    http.routes[('GET', '/api/users/4242')] = FakeResponse(404)
    rv = client.post('/api/messages', {'source': 'hi'}, token=token(4242))
    assert rv.status == 401
    assert rv.headers['WWW-Authenticate'] == \
        'Bearer realm="Authentication Required"'
    assert rows() == [] and pusher.pushes == []


def asked_about(http, user_id, since=0):
    """The calls to the users service about ``user_id`` (from call
    ``since`` on: the fake is the session's)."""
    return [call for call in http.calls[since:]
            if call[:2] == ('GET', f'/api/users/{user_id}')]


def test_an_author_is_asked_about_once(client, token, http):
    since = len(http.calls)
    for _ in range(3):
        assert client.post('/api/messages', {'source': 'hi'},
                           token=token(7)).status == 201
    assert len(asked_about(http, 7, since)) == 1


def test_users_down_takes_the_token_at_its_word(client, token, http, caplog):
    """The platform keeps taking posts while the users service is down."""
    since = len(http.calls)
    http.routes[('GET', '/api/users/8')] = \
        requests.ConnectionError('users is down')
    assert client.post('/api/messages', {'source': 'hi'},
                       token=token(8)).status == 201
    assert 'taking the token at its word' in caplog.text
    # Asked again next time: nothing was learnt.
    del http.routes[('GET', '/api/users/8')]
    assert client.post('/api/messages', {'source': 'hi'},
                       token=token(8)).status == 201
    assert len(asked_about(http, 8, since)) == 2


def test_get_messages_anonymous_and_with_token(client, token, add_message):
    first = add_message('one')
    rv = client.get('/api/messages')
    assert rv.status == 200
    assert [m['id'] for m in rv.json['messages']] == [first]
    assert set(rv.json) == {'messages'}
    assert set(rv.json['messages'][0]) == MESSAGE_KEYS
    rv = client.get('/api/messages', token=token(3))
    assert rv.status == 200
    assert len(rv.json['messages']) == 1


AWKWARD_TEXTS = [
    ''.join(chr(code) for code in range(0, 32)) + '\x7f',
    'quotes " \' and backslashes \\ \\" \\\\n /slash/ </script>',
    'zoë ß 中文 🙂 \u2028\u2029 \ufeff',
    'x' * 70000,
]


def test_list_json_is_the_dict_form(client, add_message, now):
    """The list's JSON is written by the database (models.message_json):
    each item must equal, key order included, what message_dict gives for
    the same message, whatever its text."""
    ids = [add_message(text, html=f'<p>{text}</p>', user_id=2 ** 31 - 1,
                       created_at=now - 5, updated_at=now + index,
                       edited_at=(now + index if index % 2 else None))
           for index, text in enumerate(AWKWARD_TEXTS)]
    ids.append(add_message('plain', user_id=1, updated_at=now + 10, edited_at=0))
    rv = client.get('/api/messages')
    assert rv.status == 200
    assert rv.headers['Content-Type'] == 'application/json'
    listed = rv.json['messages']
    assert [item['id'] for item in listed] == ids
    for item in listed:
        single = client.get(f"/api/messages/{item['id']}").json
        assert item == single
        assert list(item) == list(single)
        assert list(item['_links']) == list(single['_links'])
    assert listed[0]['source'] == AWKWARD_TEXTS[0]
    assert listed[3]['html'] == f'<p>{AWKWARD_TEXTS[3]}</p>'
    assert listed[4]['edited_at'] == 0


def test_get_messages_empty(client):
    rv = client.get('/api/messages')
    assert rv.status == 200
    assert rv.json == {'messages': []}


def test_messages_ordered_by_updated_at_then_id(client, add_message, now):
    c = add_message('c', created_at=now - 50, updated_at=now - 10)
    a = add_message('a', created_at=now - 50, updated_at=now - 30)
    b1 = add_message('b1', created_at=now - 50, updated_at=now - 20)
    b2 = add_message('b2', created_at=now - 50, updated_at=now - 20)
    rv = client.get('/api/messages')
    assert [m['id'] for m in rv.json['messages']] == [a, b1, b2, c]


def test_updated_since_is_inclusive(client, add_message, now):
    add_message('old', created_at=now - 100, updated_at=now - 100)
    edge = add_message('edge', created_at=now - 100, updated_at=now - 50)
    new = add_message('new', created_at=now - 100, updated_at=now - 10)
    rv = client.get(f'/api/messages?updated_since={now - 50}')
    assert [m['id'] for m in rv.json['messages']] == [edge, new]
    rv = client.get(f'/api/messages?updated_since={now + 60}')
    assert rv.json['messages'] == []


def test_never_older_than_a_day(client, add_message, now):
    add_message('too old', created_at=now - DAY - 100,
                updated_at=now - DAY - 5)
    recent = add_message('recent', created_at=now - DAY - 100,
                         updated_at=now - DAY + 5)
    for query in ('', '?updated_since=0', '?updated_since=-5',
                  f'?updated_since={now - 10 * DAY}', '?updated_since='):
        rv = client.get('/api/messages' + query)
        assert rv.status == 200, query
        assert [m['id'] for m in rv.json['messages']] == [recent], query


def test_get_message(client, add_message):
    message_id = add_message('one *two*', html='one <em>two</em>', user_id=4)
    rv = client.get(f'/api/messages/{message_id}')
    assert rv.status == 200
    assert rv.json['id'] == message_id
    assert rv.json['source'] == 'one *two*'
    assert rv.json['html'] == 'one <em>two</em>'
    assert rv.json['_links']['user'] == '/api/users/4'


@pytest.mark.parametrize('path', [
    '/api/messages/12345', '/api/messages/0', '/api/messages/-1',
    '/api/messages/abc', '/api/messages/1.5',
    '/api/messages/99999999999999999999999999', '/api/messages/2147483648',
])
def test_get_unknown_message(client, add_message, path):
    add_message()
    rv = client.get(path)
    assert rv.status == 404
    assert rv.json == {'error': 'not found'}


def test_edit_own_message(client, token, add_message, rows, now):
    message_id = add_message('before', user_id=5, created_at=now - 100,
                             updated_at=now - 100)
    rv = client.put(f'/api/messages/{message_id}',
                    {'source': 'after *edit*'}, token=token(5))
    assert rv.status == 204
    assert rv.data == b''
    [row] = rows()
    assert row['source'] == 'after *edit*'
    assert row['html'] == 'after <em>edit</em>'
    assert row['created_at'] == now - 100
    assert now <= row['updated_at'] <= now + 2
    rv = client.get(f'/api/messages/{message_id}')
    assert rv.json['html'] == 'after <em>edit</em>'


def test_edited_message_moves_to_the_end(client, token, add_message, now):
    first = add_message('first', created_at=now - 100, updated_at=now - 100)
    second = add_message('second', created_at=now - 50, updated_at=now - 50)
    client.put(f'/api/messages/{first}', {'source': 'first, edited'},
               token=token(1))
    rv = client.get('/api/messages')
    assert [m['id'] for m in rv.json['messages']] == [second, first]
    rv = client.get(f'/api/messages?updated_since={now - 10}')
    assert [m['id'] for m in rv.json['messages']] == [first]


def test_edit_someone_elses_message(client, token, add_message, rows, pusher):
    message_id = add_message('mine', user_id=5)
    before = rows()
    rv = client.put(f'/api/messages/{message_id}', {'source': 'yours'},
                    token=token(6))
    assert rv.status == 403
    assert rv.json['error']
    assert rows() == before
    assert pusher.pushes == []


def test_edit_unknown_message(client, token):
    for path in ('/api/messages/999', '/api/messages/abc',
                 '/api/messages/99999999999999999999'):
        rv = client.put(path, {'source': 'x'}, token=token())
        assert rv.status == 404, path
        assert rv.json == {'error': 'not found'}


def test_edit_requires_a_token(client, add_message, rows):
    message_id = add_message('mine')
    before = rows()
    rv = client.put(f'/api/messages/{message_id}', {'source': 'x'})
    assert rv.status == 401
    assert rv.headers['WWW-Authenticate'] == \
        'Bearer realm="Authentication Required"'
    assert rows() == before


def test_methods_not_allowed(client, token, add_message):
    message_id = add_message()
    rv = client.delete(f'/api/messages/{message_id}', token=token())
    assert rv.status == 405
    assert rv.json['error']
    assert client.put('/api/messages', {'source': 'x'},
                      token=token()).status == 405
    assert client.post(f'/api/messages/{message_id}', {'source': 'x'},
                       token=token()).status == 405


def test_to_dict_outside_a_request():
    message = Message(id=3, created_at=10, updated_at=20, source='s',
                      html='h', user_id=9)
    assert message.to_dict() == {
        'id': 3, 'created_at': 10, 'updated_at': 20, 'source': 's',
        'html': 'h', 'user_id': 9, 'edited_at': None,
        '_links': {'self': '/api/messages/3', 'user': '/api/users/9'},
    }


def test_health(client):
    rv = client.get('/health')
    assert rv.status == 200
    assert rv.json['service'] == 'messages'
