"""``flask seed-users``: many users at once, for benchmarks and tests,
with bulk inserts (see ``microflack_common.seeding``: no pushes are sent).

Nicknames are ``seed-00001``, ``seed-00002``...: numbered on from the
largest such number already taken, so a second run adds new users and
never collides with the first. They all get one password, hashed once
(a hash costs tens of milliseconds by design: one per user would take
minutes), are offline, and were created, updated and last seen at times
spread over the last days, in id order.
"""
import re

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from microflack_common.seeding import (
    DEFAULT_DAYS,
    bulk_insert,
    count_option,
    days_option,
    id_range_line,
    spread_timestamps,
)

from .models import User, db

NICKNAME_PREFIX = 'seed-'
DEFAULT_PASSWORD = 'seed'


def first_free_number():
    """One more than the largest number of a ``seed-<number>`` nickname
    (1 when there is none)."""
    pattern = re.compile(re.escape(NICKNAME_PREFIX) + r'(\d+)')
    nicknames = db.session.scalars(
        select(User.nickname).where(User.nickname.startswith(NICKNAME_PREFIX)))
    numbers = [int(match.group(1)) for nickname in nicknames
               if (match := pattern.fullmatch(nickname))]
    return max(numbers, default=0) + 1


def nickname(number):
    return f'{NICKNAME_PREFIX}{number:05d}'


def password_hash(password):
    """The hash the service itself would store for ``password``."""
    user = User()       # never added to the session: nothing is written
    user.set_password(password)
    return user.password_hash


def user_rows(count, password, days, now=None):
    """The rows of ``count`` new users, oldest first."""
    first = first_free_number()
    shared_hash = password_hash(password)
    for number, when in enumerate(spread_timestamps(count, days, now), first):
        yield {'created_at': when, 'updated_at': when, 'last_seen_at': when,
               'nickname': nickname(number), 'password_hash': shared_hash,
               'online': False}


def seed_users(count, password=DEFAULT_PASSWORD, days=DEFAULT_DAYS,
               now=None):
    """Create ``count`` users; returns their ids (a range)."""
    return bulk_insert(db.engine, User.__table__,
                       user_rows(count, password, days, now), count, 'users')


def not_empty(ctx, param, value):
    if not value:
        raise click.BadParameter('must not be empty')
    return value


@click.command('seed-users')
@count_option
@click.option('--password', default=DEFAULT_PASSWORD, show_default=True,
              callback=not_empty, help='The password of every user made.')
@days_option
@with_appcontext
def seed_users_command(count, password, days):
    """Create COUNT users (seed-00001, seed-00002...) with bulk inserts,
    offline and seen over the last DAYS days. The last line printed says
    which ids they got: "ids A-B"."""
    click.echo(id_range_line(seed_users(count, password, days)))
