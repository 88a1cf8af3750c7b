"""Paged lists (issue 14): the query parameters of a paged GET, the SQL
that reads one page, and the ``_meta`` and ``_links`` of its answer.

A list answers as it always did unless the request names one of
``PAGING_ARGS``; then it answers one page::

    {"messages": [...], "_meta": {"limit": 50, "more": true},
     "_links": {"self": ..., "next": ..., "updates": ...}}

Two orders, each with a cursor that a page's last item gives:

- by id, the order things were stored: ``limit`` alone is the newest page,
  ``before=<id>`` travels to older items, ``after=<id>`` to newer ones;
- the changes feed, ``updated_since=<ts>`` (with ``after=<id>`` as the
  tie-breaker within a second), by (updated_at, id): everything created or
  changed since a moment, oldest change first.

Items within a page are always oldest first, so a page is shown as it
comes. ``_meta.more`` says whether more items follow in the page's
direction; ``_links.next`` is that page. The feed never ends: its ``next``
is always there, the place to ask again later. Timestamps are whole
seconds and a change committed late may carry an earlier second than one
already read, so a feed read to its end continues from a second before
its last item: clients merge by id and see a few changes twice, never a
gap. A page of ids also links the feed from the moment it was read
(``updates``), so that a client learns what changes after it.

``limit`` above ``MAX_PAGE_SIZE`` is capped (the answer's ``_meta.limit``
says so); without ``limit`` a page has the maximum size.
"""
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import abort, current_app, request
from sqlalchemy import BigInteger, bindparam, or_

from .utils import timestamp
from .validation import int_arg

PAGING_ARGS = ('limit', 'before', 'after', 'updated_since')

# The shapes of a page's query: each is one SQL statement.
NEWEST = 'newest'               # the highest ids
BEFORE = 'before'               # the highest ids below a cursor
AFTER = 'after'                 # the lowest ids above a cursor
CHANGES = 'changes'             # changed since a moment
CHANGES_AFTER = 'changes_after'  # changed since a moment, after an item
SHAPES = (NEWEST, BEFORE, AFTER, CHANGES, CHANGES_AFTER)
# Shapes read from the newest end (their SQL orders by id descending).
OLDER = (NEWEST, BEFORE)


def wants_page(names=PAGING_ARGS):
    """Whether the request names a paging parameter (an empty value counts
    as absent, as everywhere in the query string)."""
    return any(request.args.get(name, '') != '' for name in names)


def _number(name):
    return bindparam(name, type_=BigInteger)


def page_statement(query, id_column, updated_column, shape):
    """``query`` (a SELECT of one table) narrowed to one page of ``shape``,
    with the bind parameters ``limit`` and, by shape, ``before``,
    ``after``, ``since``. The orders match the tables' indexes: the
    primary key, and (updated_at) whose entries end with the primary key."""
    limit = _number('limit')
    if shape == NEWEST:
        query = query.order_by(id_column.desc())
    elif shape == BEFORE:
        query = query.where(id_column < _number('before')) \
            .order_by(id_column.desc())
    elif shape == AFTER:
        query = query.where(id_column > _number('after')).order_by(id_column)
    elif shape in (CHANGES, CHANGES_AFTER):
        since = _number('since')
        query = query.where(updated_column >= since)
        if shape == CHANGES_AFTER:
            # After (since, after) in the feed's order: written as a range
            # on updated_at and a filter, which the index answers in order.
            query = query.where(or_(updated_column > since,
                                    id_column > _number('after')))
        query = query.order_by(updated_column, id_column)
    else:
        raise ValueError(f'unknown page shape {shape!r}')
    return query.limit(limit)


def page_statements(query, id_column, updated_column):
    """{shape: statement} for every shape (see :func:`page_statement`)."""
    return {shape: page_statement(query, id_column, updated_column, shape)
            for shape in SHAPES}


@dataclass(frozen=True)
class PageRequest:
    """A paged request's parameters, checked. ``since`` is the feed's
    starting time after any floor; ``filters`` are query parameters that
    narrow the list (e.g. ``online``) and are kept in its links."""
    limit: int
    before: int | None = None
    after: int | None = None
    since: int | None = None
    requested_since: int | None = None
    filters: tuple = ()

    @property
    def feed(self):
        return self.since is not None

    @property
    def shape(self):
        if self.feed:
            # A raised starting time passes the cursor's second: the whole
            # feed from there is after it.
            return CHANGES_AFTER if self.after is not None \
                and self.since == self.requested_since else CHANGES
        if self.before is not None:
            return BEFORE
        return AFTER if self.after is not None else NEWEST

    def params(self):
        """The bind parameters of the page's statement. One item more than
        the page is read: whether it exists is ``more``."""
        params = {'limit': self.limit + 1}
        shape = self.shape
        if shape == BEFORE:
            params['before'] = self.before
        if shape in (AFTER, CHANGES_AFTER):
            params['after'] = self.after
        if self.feed:
            params['since'] = self.since
        return params


def page_request(filters=(), since_floor=None):
    """The page the request asks for; 400 for a bad or contradictory
    parameter. ``since_floor``: the feed never starts before it."""
    max_size = current_app.config['MAX_PAGE_SIZE']
    limit = int_arg('limit')
    if limit is not None and limit < 1:
        abort(400, 'limit must be at least 1')
    limit = max_size if limit is None else min(limit, max_size)
    before, after = int_arg('before'), int_arg('after')
    requested_since = int_arg('updated_since')
    if before is not None and after is not None:
        abort(400, 'give before or after, not both')
    if before is not None and requested_since is not None:
        abort(400, 'before cannot be combined with updated_since')
    since = requested_since
    if since is not None and since_floor is not None:
        since = max(since, since_floor)
    return PageRequest(limit, before, after, since, requested_since,
                       tuple(filters))


class Page:
    """One page read for a :class:`PageRequest`: ``rows`` as the statement
    returned them (``limit + 1`` at most), ``key(row)`` -> (id,
    updated_at). ``items`` are the page's rows, oldest first."""

    def __init__(self, page_request, rows, key):
        self.request = page_request
        rows = list(rows)
        self.more = len(rows) > page_request.limit
        rows = rows[:page_request.limit]
        if page_request.shape in OLDER:
            rows.reverse()
        self.items = rows
        self.keys = [key(row) for row in rows]

    def meta(self):
        meta = {'limit': self.request.limit, 'more': self.more}
        if self.request.feed:
            meta['updated_since'] = self.request.since
        return meta

    def links(self, path=None):
        """``self``, ``next`` (see the module's docstring) and, on a page
        of ids, ``updates``."""
        path = path or request.path
        page = self.request
        links = {'self': _url(path, page.filters, self._query(
            page.before, page.after, page.requested_since))}
        next_query = self._next_query()
        if next_query is not None:
            links['next'] = _url(path, page.filters, next_query)
        if not page.feed:
            # The feed from now on; a second early, as a feed's end is.
            links['updates'] = _url(path, (), {'updated_since':
                                               timestamp() - 1})
        return links

    def _query(self, before=None, after=None, since=None):
        query = {}
        if since is not None:
            query['updated_since'] = since
        if before is not None:
            query['before'] = before
        if after is not None:
            query['after'] = after
        query['limit'] = self.request.limit
        return query

    def _next_query(self):
        page = self.request
        if page.feed:
            if self.more:
                last_id, last_updated = self.keys[-1]
                return self._query(since=last_updated, after=last_id)
            if self.keys:
                return self._query(since=self.keys[-1][1] - 1)
            # Nothing changed since: ask the same again later.
            return self._query(since=page.since, after=page.after
                               if page.shape == CHANGES_AFTER else None)
        if not self.more:
            return None
        if page.shape in OLDER:
            return self._query(before=self.keys[0][0])
        return self._query(after=self.keys[-1][0])


def _url(path, filters, query):
    return f'{path}?{urlencode([*filters, *query.items()])}'
