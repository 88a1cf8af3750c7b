"""microflack_common.paging: what a paged request asks for, and the
links of its answer (the services' tests run the pages on real tables)."""
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from sqlalchemy import Column, Integer, MetaData, Table, select
from werkzeug.exceptions import BadRequest

from microflack_common import paging
from microflack_common.utils import timestamp

items = Table('items', MetaData(), Column('id', Integer, primary_key=True),
              Column('updated_at', Integer))


@pytest.fixture
def app():
    app = Flask(__name__)
    app.config['MAX_PAGE_SIZE'] = 10
    return app


def asked(app, query, **kwargs):
    with app.test_request_context('/api/items' + query):
        return paging.page_request(**kwargs)


def answer(app, query, keys, read=None, **kwargs):
    """The page for ``query`` whose statement returned rows with these
    (id, updated_at) keys (``read`` of them: the page size plus one)."""
    with app.test_request_context('/api/items' + query):
        page = paging.Page(paging.page_request(**kwargs), keys[:read],
                           key=lambda row: row)
        return page, page.meta(), page.links()


def params(url):
    parts = urlsplit(url)
    assert parts.path == '/api/items'
    return dict(parse_qsl(parts.query))


@pytest.mark.parametrize('query, paged', [
    ('', False), ('?online=1', False), ('?limit=', False),
    ('?limit=5', True), ('?before=3', True), ('?after=3', True),
    ('?updated_since=0', True),
])
def test_wants_page(app, query, paged):
    with app.test_request_context('/api/items' + query):
        assert paging.wants_page() is paged


@pytest.mark.parametrize('query, shape, bound', [
    ('?limit=5', paging.NEWEST, {'limit': 6}),
    ('?before=9&limit=5', paging.BEFORE, {'limit': 6, 'before': 9}),
    ('?after=9', paging.AFTER, {'limit': 11, 'after': 9}),
    ('?updated_since=100', paging.CHANGES, {'limit': 11, 'since': 100}),
    ('?updated_since=100&after=4&limit=99', paging.CHANGES_AFTER,
     {'limit': 11, 'since': 100, 'after': 4}),
])
def test_shapes_and_their_parameters(app, query, shape, bound):
    page = asked(app, query)
    assert page.shape == shape
    assert page.params() == bound


def test_a_raised_start_passes_the_cursor(app):
    """The floor moved the start past the cursor's second: every change
    from the floor on comes after the cursor."""
    page = asked(app, '?updated_since=100&after=4', since_floor=500)
    assert (page.since, page.requested_since) == (500, 100)
    assert page.shape == paging.CHANGES
    assert page.params() == {'limit': 11, 'since': 500}
    assert asked(app, '?updated_since=900', since_floor=500).since == 900


@pytest.mark.parametrize('query', [
    '?limit=0', '?limit=-1', '?limit=x', '?before=1&after=2',
    '?before=1&updated_since=2', '?after=1e3',
])
def test_bad_requests(app, query):
    with pytest.raises(BadRequest):
        asked(app, query)


def test_pages_of_ids_and_their_links(app):
    # Read newest first, shown oldest first; one row more than the page
    # means more.
    page, meta, links = answer(app, '?limit=2', [(9, 0), (8, 0), (7, 0)])
    assert page.items == [(8, 0), (9, 0)]
    assert meta == {'limit': 2, 'more': True}
    assert params(links['self']) == {'limit': '2'}
    assert params(links['next']) == {'before': '8', 'limit': '2'}
    now = timestamp()
    assert now - 2 <= int(params(links['updates'])['updated_since']) <= now
    page, meta, links = answer(app, '?after=3&limit=2', [(4, 0), (5, 0)])
    assert page.items == [(4, 0), (5, 0)]
    assert meta == {'limit': 2, 'more': False}
    assert 'next' not in links and 'updates' in links


def test_filters_stay_in_the_links_but_not_in_updates(app):
    with app.test_request_context('/api/items?online=1&limit=1'):
        page = paging.Page(paging.page_request((('online', 1),)),
                           [(5, 0), (4, 0)], key=lambda row: row)
        links = page.links()
    assert params(links['self']) == {'online': '1', 'limit': '1'}
    assert params(links['next']) == {'online': '1', 'before': '5',
                                     'limit': '1'}
    assert set(params(links['updates'])) == {'updated_since'}


def test_the_feed_always_has_a_next(app):
    # More: continue exactly after the last item.
    _, meta, links = answer(app, '?updated_since=10&limit=2',
                            [(3, 10), (1, 11), (2, 11)])
    assert meta == {'limit': 2, 'more': True, 'updated_since': 10}
    assert params(links['next']) == {'updated_since': '11', 'after': '1',
                                     'limit': '2'}
    assert 'updates' not in links
    # The end: from a second before the last change, so that one committed
    # late with an earlier second is not missed.
    _, meta, links = answer(app, '?updated_since=10&limit=2', [(3, 10)])
    assert meta['more'] is False
    assert params(links['next']) == {'updated_since': '9', 'limit': '2'}
    # Nothing: the same request again later.
    _, _, links = answer(app, '?updated_since=10&after=3&limit=2', [])
    assert params(links['next']) == {'updated_since': '10', 'after': '3',
                                     'limit': '2'}
    _, meta, links = answer(app, '?updated_since=10&after=3', [],
                            since_floor=50)
    assert meta['updated_since'] == 50
    assert params(links['next']) == {'updated_since': '50', 'limit': '10'}


def test_statements_order_as_the_indexes(app):
    statements = paging.page_statements(select(items.c.id), items.c.id,
                                        items.c.updated_at)
    sql = {shape: str(statement).replace('\n', ' ')
           for shape, statement in statements.items()}
    assert 'ORDER BY items.id DESC' in sql[paging.NEWEST]
    assert 'WHERE items.id < :before ORDER BY items.id DESC' in sql[paging.BEFORE]
    assert 'WHERE items.id > :after ORDER BY items.id' in sql[paging.AFTER]
    assert 'ORDER BY items.updated_at, items.id' in sql[paging.CHANGES_AFTER]
    assert '(items.updated_at > :since OR items.id > :after)' in \
        sql[paging.CHANGES_AFTER]
    assert all('LIMIT :limit' in text for text in sql.values())
    with pytest.raises(ValueError):
        paging.page_statement(select(items.c.id), items.c.id,
                              items.c.updated_at, 'sideways')
