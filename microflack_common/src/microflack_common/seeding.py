"""Filling a service's table with generated rows, quickly: what the
``flask seed-users`` and ``flask seed-messages`` commands (and ``mfseed``,
which runs them) share.

- :func:`bulk_insert`: rows go in batches of ``BATCH_ROWS``, each one
  executemany of a Core ``insert()`` in a transaction of its own. PyMySQL
  turns such an executemany into multi-row ``INSERT ... VALUES`` statements
  of at most 1,024,000 bytes each (within even an old 1 MiB
  ``max_allowed_packet``; MariaDB's default is 16 MiB), so a batch costs a
  few round trips instead of one per row. An interrupted run keeps the
  batches it committed.
- The inserts bypass the ORM session, so no ``updated_model`` push is sent
  for them: a million pushes would flood every browser, and a seeded
  platform is loaded by its clients afterwards anyway.
- :func:`spread_timestamps`: times evenly spread over the last days, in
  increasing order, so that later ids carry later times.
- :func:`chat_sources`: a deterministic set of chat-like message sources.
- :class:`IdRange` (``A-B`` on a command line) and the shared options.

Rows take the ids the database gives them; :func:`bulk_insert` reads back
which those were.
"""
import random
import re
import time
from itertools import islice

import click
from sqlalchemy import func, select

from .validation import MAX_ID

SECONDS_PER_DAY = 24 * 60 * 60
# Rows per transaction: large enough that a commit's flush to disk is
# spread over many rows, small enough that one batch's parameters stay a
# few megabytes of memory.
BATCH_ROWS = 5000
DEFAULT_DAYS = 30
# Ten years back is still far from 1970 and from the INT columns' limits.
MAX_DAYS = 3650

count_option = click.option(
    '--count', required=True, type=click.IntRange(min=1),
    help='How many rows to create.')
days_option = click.option(
    '--days', default=DEFAULT_DAYS, show_default=True,
    type=click.IntRange(1, MAX_DAYS),
    help='Their times are spread evenly over this many days up to now.')


class IdRange(click.ParamType):
    """``A-B`` (or ``A``) on the command line: the ids A to B, inclusive,
    as a ``range``."""
    name = 'A-B'

    def convert(self, value, param, ctx):
        if isinstance(value, range):
            return value
        try:
            return parse_id_range(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def parse_id_range(text):
    """``'A-B'`` → ``range(A, B + 1)``; ``'A'`` → ``range(A, A + 1)``.
    Raises ValueError for anything else, or ids out of 1..MAX_ID."""
    match = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', text)
    if match is None:
        raise ValueError(f'{text!r} is not an id range like 12-345')
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if not 1 <= first <= last <= MAX_ID:
        raise ValueError(f'{text!r}: ids go from 1 to {MAX_ID}, and the '
                         'first may not be larger than the last')
    return range(first, last + 1)


def spread_timestamps(count, days, now=None):
    """``count`` integer Unix times spread evenly over the ``days`` days
    up to ``now`` (now - days <= t <= now), in non-decreasing order; the
    last is ``now``."""
    now = int(time.time()) if now is None else now
    span = days * SECONDS_PER_DAY
    start = now - span
    return (start + (index * span) // count
            for index in range(1, count + 1))


# The words chat_sources() combines.
_PEOPLE = ('ana', 'bo', 'chen', 'dee', 'eli', 'femi', 'gus', 'hana',
           'ivo', 'jun', 'kai', 'léa', 'mo', 'noor')
_THINGS = ('the deploy', 'the build', 'lunch', 'the release',
           'the load balancer', 'the database', 'the benchmark', 'standup',
           'the README', 'the login page', 'the new index', 'the roll',
           'the test run', 'the demo', 'coffee', 'the retro', 'the migration',
           'the chat page')
_STATES = ('is done', 'looks good to me', 'is broken again',
           'takes forever today', 'needs a review', 'is on me',
           'moved to tomorrow', 'is green now', 'went fine', 'is stuck',
           'is twice as fast now', 'is next')
_OPENERS = ('', '', 'ok, ', 'fyi: ', 'heads up: ', 'morning! ', 'hmm, ',
            'so ', 'good news: ', 'quick one: ')
_ENDINGS = ('', '', '.', '!', ' :)', '?', '...', ' 🎉')
_COMMANDS = ('mfrun messages', 'mflogs -n 50', 'git pull', 'make test',
             'mfupgrade status', 'flask db upgrade')
_SLUGS = ('notes', 'plan', 'issue-14', 'runbook', 'faq', 'status',
          'design', 'minutes')


def _plain(rng):
    return (f'{rng.choice(_OPENERS)}{rng.choice(_THINGS)} '
            f'{rng.choice(_STATES)}{rng.choice(_ENDINGS)}')


def _question(rng):
    return (f'@{rng.choice(_PEOPLE)} did you see that '
            f'{rng.choice(_THINGS)} {rng.choice(_STATES)}?')


def _markdown(rng):
    thing, state = rng.choice(_THINGS), rng.choice(_STATES)
    return rng.choice((
        f'{thing} *really* {state}{rng.choice(_ENDINGS)}',
        f'**{thing}** {state}',
        f'try `{rng.choice(_COMMANDS)}` for {thing}',
        f'{rng.choice(_OPENERS)}_{thing}_ {state}, says {rng.choice(_PEOPLE)}',
    ))


def _with_link(rng):
    thing, slug = rng.choice(_THINGS), rng.choice(_SLUGS)
    # Reserved example domains: a link someone follows goes nowhere real.
    return rng.choice((
        f'{thing} {rng.choice(_STATES)}, see https://example.com/{slug}',
        f'[{thing}](https://example.org/{slug}) {rng.choice(_STATES)}',
        f'{rng.choice(_OPENERS)}https://example.net/{slug}',
    ))


# Kinds of message and how often each comes.
_KINDS = ((_plain, 45), (_question, 15), (_markdown, 25), (_with_link, 15))

# chat_sources() has made about every line it can when it has made none
# new in this many tries.
_GIVE_UP_AFTER = 10_000


def chat_sources(count=400, seed=14):
    """``count`` distinct message sources that read like a chat: plain
    lines, questions, some markdown, some with a link. The same ``seed``
    gives the same list, in the same order."""
    rng = random.Random(seed)
    kinds, weights = zip(*_KINDS, strict=True)
    sources = {}     # a dict keeps the order they came in
    misses = 0       # lines in a row that came before
    while len(sources) < count:
        source = rng.choices(kinds, weights)[0](rng)
        misses = misses + 1 if source in sources else 0
        if misses > _GIVE_UP_AFTER:
            raise ValueError(f'cannot make {count} distinct sources')
        sources.setdefault(source, None)
    return list(sources)


def _batches(rows, size):
    rows = iter(rows)
    while batch := list(islice(rows, size)):
        yield batch


def largest_id(connection, table):
    """The table's largest id (0 when empty)."""
    return connection.scalar(select(func.coalesce(func.max(table.c.id), 0)))


def bulk_insert(engine, table, rows, total, what, batch_rows=BATCH_ROWS):
    """Insert the dicts ``rows`` (an iterable of ``total`` of them) into
    ``table``, a batch per transaction, telling on stderr how far it got
    (``what``: the rows' name, for those lines). Returns the ids the new
    rows got, as a range."""
    with engine.connect() as connection:
        before = largest_id(connection, table)
    started = time.monotonic()
    done = shown = 0
    for batch in _batches(rows, batch_rows):
        with engine.begin() as connection:
            connection.execute(table.insert(), batch)
        done += len(batch)
        if done * 10 // total > shown * 10 // total or done == total:
            shown = done
            click.echo(f'{done} of {total} {what} '
                       f'({time.monotonic() - started:.1f} s)', err=True)
    return _inserted_ids(engine, table, before, done, what)


def _inserted_ids(engine, table, before, done, what):
    """The ids above ``before``, where the ``done`` rows just inserted
    went. Rows that others inserted meanwhile may be among them: that is
    said on stderr."""
    id_column = table.c.id
    with engine.connect() as connection:
        count, first, last = connection.execute(
            select(func.count(), func.min(id_column), func.max(id_column))
            .where(id_column > before)).one()
    if count != done:
        click.echo(f'warning: ids {first}-{last} hold {count} {what}, not '
                   f'the {done} inserted here: others wrote meanwhile',
                   err=True)
    return range(first, last + 1) if count else range(0)


def id_range_line(ids):
    """The last line a seed command prints, for scripts: ``ids A-B``."""
    return f'ids {ids.start}-{ids.stop - 1}' if ids else 'ids none'
