"""Pages of /api/users and users by id (issue 14): a client names the
authors it shows and lists who is online without downloading every user
ever registered; the list without paging parameters is unchanged."""
import json

import pytest
import sqlalchemy as sa

from microflack_common.testing import (
    insert_rows,
    link_parts,
    query_plan,
    tables_read,
)
from microflack_users.models import User, db


@pytest.fixture
def store(app, now):
    """Store users in one statement: ``store(n, **columns)`` (values or
    functions of the index 0..n-1); returns their ids in the order stored.
    Nicknames are unique per call; the password hash is not a real one."""
    calls = []

    def add(count, **columns):
        calls.append(count)

        def defaults(index):
            return {'nickname': f'u{len(calls)}-{index}',
                    'password_hash': '-', 'created_at': now,
                    'updated_at': now, 'last_seen_at': now, 'online': False}
        with app.app_context():
            return insert_rows(db, User.__table__, count, defaults,
                               **columns)
    return add



def ids(answer):
    return [user['id'] for user in answer['users']]



def test_without_paging_parameters_the_list_is_unchanged(client, store, now):
    """Every user, by update then nickname (the original's order)."""
    store(1, nickname='zed', updated_at=now - 5)
    store(1, nickname='amy', updated_at=now - 1)
    store(1, nickname='bob', updated_at=now - 5, online=True)
    for url, names in (('/api/users', ['bob', 'zed', 'amy']),
                       ('/api/users?online=1', ['bob']),
                       ('/api/users?online=0', ['zed', 'amy']),
                       ('/api/users?ids=&limit=', ['bob', 'zed', 'amy'])):
        answer = client.get_json(url)
        assert set(answer) == {'users'}, url
        assert [user['nickname'] for user in answer['users']] == names, url


def test_the_online_users_page_by_page(client, store):
    """Online users, newest registered first page, the filter kept in the
    links, the feed link without it (going offline is a change too)."""
    stored = store(9, online=lambda i: i % 3 != 0)
    online = [user for index, user in enumerate(stored) if index % 3 != 0]
    answer = client.get_json('/api/users?online=1&limit=4')
    assert ids(answer) == online[-4:]
    assert answer['_meta'] == {'limit': 4, 'more': True}
    assert link_parts(answer['_links']['self'])[1] == {'online': '1', 'limit': '4'}
    assert link_parts(answer['_links']['next'])[1] == {
        'online': '1', 'before': str(online[-4]), 'limit': '4'}
    assert set(link_parts(answer['_links']['updates'])[1]) == {'updated_since'}
    answer = client.get_json(answer['_links']['next'])
    assert ids(answer) == online[:2]
    assert answer['_meta']['more'] is False and 'next' not in answer['_links']
    answer = client.get_json(f'/api/users?online=0&after={stored[0]}')
    assert ids(answer) == [stored[3], stored[6]]


def test_the_feed_of_user_changes(client, store, now):
    """Ordered by (updated_at, id), continued by the cursor of the last
    user; no day limit for users."""
    stored = store(6, updated_at=lambda i: now - 100 * 24 * 3600 + (i % 2))
    expected = stored[0::2] + stored[1::2]
    seen, url = [], '/api/users?updated_since=0&limit=4'
    while url:
        answer = client.get_json(url)
        seen += ids(answer)
        url = answer['_links']['next'] if answer['_meta']['more'] else None
    assert seen == expected
    assert answer['_meta']['updated_since'] == int(
        link_parts(answer['_links']['self'])[1]['updated_since'])


def test_users_by_id(client, store):
    stored = store(5)
    answer = client.get_json(f'/api/users?ids={stored[3]},{stored[1]},{stored[3]}'
                         ',99999999,0')
    assert answer == {'users': [client.get_json(f'/api/users/{stored[1]}'),
                                client.get_json(f'/api/users/{stored[3]}')]}
    assert ids(client.get_json(f'/api/users?ids={stored[2]}')) == [stored[2]]
    assert ids(client.get_json(f'/api/users?ids= {stored[2]} ,{stored[4]}')) == [
        stored[2], stored[4]]


def test_users_by_id_with_the_online_filter(client, store):
    stored = store(4, online=lambda i: i < 2)
    answer = client.get_json('/api/users?online=1&ids='
                         + ','.join(map(str, stored)))
    assert ids(answer) == stored[:2]


@pytest.mark.parametrize('params, error', [
    ('ids=1,,2', 'ids must be ids separated by commas'),
    ('ids=1;2', 'ids must be ids separated by commas'),
    ('ids=a', 'ids must be ids separated by commas'),
    ('ids=-1', 'ids must be ids separated by commas'),
    ('ids=1&limit=5', 'ids cannot be combined with limit, before, after or '
                      'updated_since'),
    ('ids=1&updated_since=5', 'ids cannot be combined with limit, before, '
                              'after or updated_since'),
    ('ids=' + ','.join(str(i) for i in range(1, 6)),
     'ids may name at most 4 users'),
    ('limit=0', 'limit must be at least 1'),
    ('after=x', 'after must be an integer'),
    ('before=3&after=1', 'give before or after, not both'),
    ('online=maybe&limit=3', 'online must be 0 or 1'),
])
def test_bad_parameters(client, store, settings, params, error):
    settings(MAX_PAGE_SIZE=4)
    store(2)
    rv = client.get(f'/api/users?{params}')
    assert rv.status == 400
    assert rv.json == {'error': error}


def test_pages_read_only_the_rows_they_show(app, client, store, now):
    """The online list and the feed walk an index and stop after the page,
    however many users there are."""
    from microflack_common.paging import page_request, page_statement
    from microflack_users.api import users_query

    store(2000, online=lambda i: i % 200 == 0,
          updated_at=lambda i: now - 2000 + i // 10)
    with app.app_context():
        if db.engine.dialect.name == 'mysql':
            db.session.execute(sa.text('ANALYZE TABLE users'))
    cases = {
        'newest': ('?online=1&limit=5', 'ix_users_online'),
        'changes': (f'?updated_since={now - 1000}&limit=20',
                    'ix_users_updated_at'),
    }
    for shape, (url, index) in cases.items():
        with app.test_request_context('/api/users' + url):
            page = page_request()
            assert page.shape == shape
            statement = page_statement(
                users_query(True if 'online' in url else None),
                User.id, User.updated_at, shape)
            plan = query_plan(db, statement, page.params())
        if isinstance(plan, dict):
            [table] = list(tables_read(plan))
            assert table['r_rows'] <= page.limit + 1, (shape, table)
            assert 'filesort' not in json.dumps(plan), (shape, plan)
            assert table['key'] == index, (shape, table)
        else:
            assert not any('TEMP B-TREE' in step for step in plan), \
                (shape, plan)
            assert any(index in step for step in plan), (shape, plan)
