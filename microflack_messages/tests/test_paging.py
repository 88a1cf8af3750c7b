"""Pages of /api/messages (issue 14): the newest page, older and newer
pages by id, the changes feed, their bounds and links, and the list
without paging parameters answering as it always did."""
import json

import pytest
import sqlalchemy as sa

from microflack_common.testing import (
    insert_rows,
    link_parts,
    query_plan,
    tables_read,
)
from microflack_messages.models import Message, db

DAY = 24 * 60 * 60


@pytest.fixture
def store(app, now):
    """Store messages in one statement: ``store(n, **columns)`` (columns
    are values or functions of the index 0..n-1); returns their ids, in
    the order stored."""
    def defaults(index):
        return {'source': f'message {index}', 'html': f'message {index}',
                'user_id': 1, 'created_at': now, 'updated_at': now}

    def add(count, **columns):
        with app.app_context():
            return insert_rows(db, Message.__table__, count, defaults,
                               **columns)
    return add



def ids(answer):
    return [message['id'] for message in answer['messages']]



def follow(client, url, limit=50):
    """Every page from ``url`` on, following ``next`` while ``more``."""
    pages = []
    while url and len(pages) < limit:
        answer = client.get_json(url)
        pages.append(answer)
        url = answer['_links'].get('next') if answer['_meta']['more'] else None
    return pages


# -- unchanged without paging parameters ---------------------------------

def test_without_paging_parameters_the_list_is_the_whole_last_day(
        client, store, now):
    old = store(2, created_at=now - 2 * DAY, updated_at=now - 2 * DAY)
    recent = store(3)
    for url in ('/api/messages', '/api/messages?limit=&before=&after=',
                '/api/messages?unknown=1'):
        answer = client.get_json(url)
        assert set(answer) == {'messages'}, url
        assert ids(answer) == recent
    assert not set(old) & set(ids(client.get_json('/api/messages')))


# -- pages of ids ---------------------------------------------------------

def test_the_newest_page(client, store, now):
    stored = store(10)
    answer = client.get_json('/api/messages?limit=3')
    assert ids(answer) == stored[-3:]           # oldest first in the page
    assert answer['_meta'] == {'limit': 3, 'more': True}
    links = answer['_links']
    assert links['self'] == '/api/messages?limit=3'
    assert link_parts(links['next']) == ('/api/messages', {
        'before': str(stored[-3]), 'limit': '3'})
    path, updates = link_parts(links['updates'])
    assert path == '/api/messages' and set(updates) == {'updated_since'}
    assert now - 1 <= int(updates['updated_since']) <= now + 1
    # Each message as GET /api/messages/<id> gives it.
    for message in answer['messages']:
        assert message == client.get_json(f"/api/messages/{message['id']}")


def test_older_pages_reach_the_whole_history(client, store, now):
    """Back to the first message, even those older than a day, each once,
    and the last page says there is no more."""
    ancient = store(4, created_at=now - 40 * DAY, updated_at=now - 40 * DAY)
    recent = store(7)
    pages = follow(client, '/api/messages?limit=3')
    assert [len(ids(page)) for page in pages] == [3, 3, 3, 2]
    seen = [i for page in reversed(pages) for i in ids(page)]
    assert seen == ancient + recent
    assert pages[-1]['_meta'] == {'limit': 3, 'more': False}
    assert 'next' not in pages[-1]['_links']
    assert link_parts(pages[1]['_links']['self'])[1] == {
        'before': str(recent[-3]), 'limit': '3'}


def test_before_and_after(client, store):
    stored = store(10)
    answer = client.get_json(f'/api/messages?before={stored[5]}&limit=2')
    assert ids(answer) == stored[3:5]
    assert answer['_meta']['more'] is True
    answer = client.get_json(f'/api/messages?after={stored[2]}&limit=4')
    assert ids(answer) == stored[3:7]
    assert answer['_meta'] == {'limit': 4, 'more': True}
    assert link_parts(answer['_links']['next'])[1] == {
        'after': str(stored[6]), 'limit': '4'}
    answer = client.get_json(f'/api/messages?after={stored[7]}&limit=4')
    assert ids(answer) == stored[8:]
    assert answer['_meta']['more'] is False
    assert 'next' not in answer['_links']
    assert 'updates' in answer['_links']
    assert ids(client.get_json(f'/api/messages?before={stored[0]}')) == []
    assert ids(client.get_json(f'/api/messages?after={stored[-1]}')) == []
    assert ids(client.get_json('/api/messages?after=-7&limit=2')) == stored[:2]


def test_an_edited_message_keeps_its_place(client, store, now):
    """Pages of ids are the order stored; an edit moves a message only in
    the changes feed."""
    stored = store(5, updated_at=now - 100)
    with client.app.app_context():
        message = db.session.get(Message, stored[0])
        message.source = 'edited'
        db.session.commit()
    assert ids(client.get_json('/api/messages?limit=5')) == stored
    assert ids(client.get_json(f'/api/messages?updated_since={now - 50}')) == [
        stored[0]]


def test_limit_is_capped_and_defaults_to_the_maximum(client, store, settings):
    settings(MAX_PAGE_SIZE=4)
    stored = store(6)
    for url in ('/api/messages?limit=1000000', f'/api/messages?after={stored[0] - 1}',
                '/api/messages?before=1000000000'):
        answer = client.get_json(url)
        assert len(answer['messages']) == 4, url
        assert answer['_meta'] == {'limit': 4, 'more': True}, url


@pytest.mark.parametrize('params, error', [
    ('limit=0', 'limit must be at least 1'),
    ('limit=-3', 'limit must be at least 1'),
    ('limit=ten', 'limit must be an integer'),
    ('limit=1.5', 'limit must be an integer'),
    ('before=x', 'before must be an integer'),
    ('after=9' + '9' * 20, 'after is out of range'),
    ('updated_since=yesterday', 'updated_since must be an integer'),
    ('before=5&after=2', 'give before or after, not both'),
    ('before=5&updated_since=0',
     'before cannot be combined with updated_since'),
])
def test_bad_paging_parameters(client, store, params, error, rows):
    store(3)
    rv = client.get(f'/api/messages?{params}')
    assert rv.status == 400
    assert rv.json == {'error': error}
    assert len(rows()) == 3


# -- the changes feed ------------------------------------------------------

def test_the_feed_in_order_of_change_with_a_cursor(client, store, now):
    """Many changes in the same second: the pages continue exactly where
    the last one ended (updated_at, then id), none lost or repeated."""
    base = now - 1000
    stored = store(9, updated_at=lambda i: base + (i % 3))
    expected = sorted(stored, key=lambda i: (base + (stored.index(i) % 3), i))
    pages = follow(client, f'/api/messages?updated_since={base}&limit=2')
    seen = [i for page in pages for i in ids(page)]
    assert seen == expected
    for page in pages[:-1]:
        last = page['messages'][-1]
        assert page['_meta'] == {'limit': 2, 'more': True,
                                 'updated_since': int(link_parts(
                                     page['_links']['self'])[1]['updated_since'])}
        assert link_parts(page['_links']['next'])[1] == {
            'updated_since': str(last['updated_at']),
            'after': str(last['id']), 'limit': '2'}
    end = pages[-1]
    assert end['_meta']['more'] is False
    # The end of the feed: ask again from a second before its last change.
    assert link_parts(end['_links']['next'])[1] == {
        'updated_since': str(base + 1), 'limit': '2'}
    assert 'updates' not in end['_links']


def test_the_feed_is_bounded(client, store, settings, now):
    """updated_since alone, as the original's clients send it, answers a
    page too: a client that was away gets a page and the way on."""
    settings(MAX_PAGE_SIZE=3)
    stored = store(5, updated_at=now - 10)
    answer = client.get_json(f'/api/messages?updated_since={now - 20}')
    assert ids(answer) == stored[:3]
    assert answer['_meta']['more'] is True
    answer = client.get_json(answer['_links']['next'])
    assert ids(answer) == stored[3:]


def test_the_feed_starts_a_day_ago_at_most(client, store, now):
    old = store(2, updated_at=now - 3 * DAY)
    recent = store(2, updated_at=now - 60)
    for url in ('/api/messages?updated_since=0',
                f'/api/messages?updated_since=0&after={old[1]}',
                f'/api/messages?updated_since={now - 2 * DAY}'
                f'&after={recent[1]}'):
        answer = client.get_json(url)
        assert ids(answer) == recent, url
        # The raised start is told, so a client knows it missed the rest.
        assert now - DAY <= answer['_meta']['updated_since'] <= now - DAY + 2


def test_an_empty_feed_page_asks_the_same_again(client, store, now):
    stored = store(2, updated_at=now - 60)
    answer = client.get_json(f'/api/messages?updated_since={now - 60}'
                         f'&after={stored[1]}&limit=5')
    assert answer['messages'] == []
    assert answer['_meta']['more'] is False
    assert link_parts(answer['_links']['next'])[1] == {
        'updated_since': str(now - 60), 'after': str(stored[1]),
        'limit': '5'}
    answer = client.get_json(f'/api/messages?updated_since={now + 60}')
    assert link_parts(answer['_links']['next'])[1]['updated_since'] == str(now + 60)


def test_a_page_is_json_with_the_messages_as_the_single_view_gives_them(
        client, store):
    store(2)
    rv = client.get('/api/messages?limit=2')
    assert rv.headers['Content-Type'] == 'application/json'
    assert json.loads(rv.data) == rv.json
    assert list(rv.json) == ['messages', '_meta', '_links']


# -- cost ----------------------------------------------------------------

def test_a_page_reads_only_the_rows_it_shows(app, client, store, now):
    """Each page's query walks an index in the page's order and stops after
    the page: as cheap with a long history as with a short one. The feed
    shares a second among many changes here, the worst case for its
    cursor."""
    from microflack_common.paging import page_request
    from microflack_messages.api import PAGES

    stored = store(3000, created_at=lambda i: now - 3000 + i,
                   updated_at=lambda i: now - 3000 + i // 100)
    with app.app_context():
        if db.engine.dialect.name == 'mysql':
            db.session.execute(sa.text('ANALYZE TABLE messages'))
    middle = stored[1550]           # in a second shared by 100 changes
    second = now - 3000 + 15
    cases = {
        'newest': '?limit=50',
        'before': f'?before={middle}&limit=50',
        'after': f'?after={middle}&limit=50',
        'changes': f'?updated_since={second}&limit=50',
        'changes_after': f'?updated_since={second}&after={middle}&limit=50',
    }
    for shape, url in cases.items():
        with app.test_request_context('/api/messages' + url):
            page = page_request()
            assert page.shape == shape
            plan = query_plan(db, PAGES[shape].statement, page.params())
            if shape == 'changes_after':    # the cursor is where it says
                assert ids(client.get_json('/api/messages' + url))[0] == \
                    middle + 1
        if isinstance(plan, dict):
            [table] = list(tables_read(plan))
            # The page and the row after it; in the feed after a cursor,
            # MariaDB may also walk the rows that share the cursor's second
            # up to it (at most a second's worth of changes, whatever the
            # history's length).
            skipped = 51 if shape == 'changes_after' else 0
            assert table['r_rows'] <= 51 + skipped, (shape, table)
            assert 'filesort' not in json.dumps(plan), (shape, plan)
            assert table['key'] == ('ix_messages_updated_at'
                                    if 'changes' in shape else 'PRIMARY'), \
                (shape, table)
        else:
            # In order of the rowid or of the index: no sorting, and the
            # LIMIT ends the walk.
            assert not any('TEMP B-TREE' in step for step in plan), \
                (shape, plan)
            if 'changes' in shape:
                assert any('ix_messages_updated_at' in step
                           for step in plan), (shape, plan)
