"""``flask seed-messages``: many messages at once, for benchmarks and
tests, with bulk inserts (see ``microflack_common.seeding``: no pushes
are sent).

Their sources come from a few hundred chat-like lines
(``seeding.chat_sources``), each rendered once by the service's own
``render()``; links are not expanded (nothing is fetched). Authors are
drawn from a range of user ids (this service cannot see the users
table: ``mfseed`` passes the ids that ``flask seed-users`` made), and the
times, created = updated, grow with the id, spread evenly over the last
days up to now. No message is edited.
"""
import random

import click
from flask.cli import with_appcontext

from microflack_common.seeding import (
    DEFAULT_DAYS,
    IdRange,
    bulk_insert,
    chat_sources,
    count_option,
    days_option,
    id_range_line,
    spread_timestamps,
)

from .models import Message, db
from .render import render


def message_rows(count, user_ids, days, now=None, seed=14):
    """The rows of ``count`` new messages, oldest first, by authors drawn
    from ``user_ids`` (the same ``seed``, the same authors and lines)."""
    sources = chat_sources(seed=seed)
    html = {source: render(source) for source in sources}
    rng = random.Random(seed)
    for when in spread_timestamps(count, days, now):
        source = rng.choice(sources)
        yield {'created_at': when, 'updated_at': when, 'source': source,
               'html': html[source], 'user_id': rng.choice(user_ids),
               'edited_at': None}


def seed_messages(count, user_ids, days=DEFAULT_DAYS, now=None):
    """Create ``count`` messages; returns their ids (a range)."""
    return bulk_insert(db.engine, Message.__table__,
                       message_rows(count, user_ids, days, now), count,
                       'messages')


@click.command('seed-messages')
@count_option
@click.option('--user-ids', required=True, type=IdRange(),
              help='Authors: ids of existing users, e.g. 12-10011.')
@days_option
@with_appcontext
def seed_messages_command(count, user_ids, days):
    """Create COUNT messages by the users USER_IDS with bulk inserts,
    spread over the last DAYS days. The last line printed says which ids
    they got: "ids A-B"."""
    click.echo(id_range_line(seed_messages(count, user_ids, days)))
