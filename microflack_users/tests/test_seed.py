"""``flask seed-users``: many users at once, through the same table, with
nicknames of their own and a password the service accepts."""
import pytest

from microflack_common.seeding import SECONDS_PER_DAY
from microflack_common.testing import seeded_ids
from microflack_common.utils import timestamp
from microflack_users.models import User, db


@pytest.fixture
def seed(app):
    """seed(option, ...) runs ``flask seed-users`` with those options."""
    runner = app.test_cli_runner()

    def run(*options):
        return runner.invoke(args=['seed-users', *options])
    return run


def test_creates_the_users(seed, rows, pusher):
    started = timestamp()
    result = seed('--count', '25', '--password', 'open sesame', '--days', '2')
    ids = seeded_ids(result)
    users = rows()
    assert len(ids) == len(users) == 25
    assert [user['id'] for user in users] == list(ids)
    assert [user['nickname'] for user in users] == \
        [f'seed-{n:05d}' for n in range(1, 26)]
    assert not any(user['online'] for user in users)
    times = [user['created_at'] for user in users]
    assert times == sorted(times)
    assert all(started - 2 * SECONDS_PER_DAY <= t <= timestamp()
               for t in times)
    assert times[0] < times[-1] - SECONDS_PER_DAY   # spread, not bunched
    for user in users:
        assert user['updated_at'] == user['last_seen_at'] == user['created_at']
    # Bulk inserts: nobody's browser hears of them.
    assert pusher.pushes == []


def test_the_password_works(seed, app, client):
    seed('--count', '3', '--password', 'open sesame')
    with app.app_context():
        first, last = (User.find_by_nickname(f'seed-0000{n}') for n in (1, 3))
        assert first.check_password('open sesame')
        assert last.check_password('open sesame')
        assert not last.check_password('open')
    rv = client.get('/api/users/me', basic=('seed-00002', 'open sesame'))
    assert rv.status == 200
    assert rv.json['nickname'] == 'seed-00002'
    assert client.get('/api/users/me',
                      basic=('seed-00002', 'wrong')).status == 401


def test_the_default_password(seed, client):
    seeded_ids(seed('--count', '1'))
    assert client.get('/api/users/me', basic=('seed-00001', 'seed')).status \
        == 200


def test_nicknames_never_collide(seed, add_user, rows):
    add_user('susan')
    add_user('seed-00007')
    add_user('seed-x')
    ids = seeded_ids(seed('--count', '2'))
    assert [user['nickname'] for user in rows() if user['id'] in ids] == \
        ['seed-00008', 'seed-00009']
    # A second run numbers on.
    seeded_ids(seed('--count', '2'))
    assert [user['nickname'] for user in rows()][-2:] == \
        ['seed-00010', 'seed-00011']


def test_ids_printed_are_the_new_ones(seed, add_user, rows):
    before = add_user('susan')
    ids = seeded_ids(seed('--count', '4'))
    assert ids.start > before
    assert {user['id'] for user in rows()} == {before, *ids}


def test_many_users_in_several_batches(seed, app, rows):
    # More than one batch of BATCH_ROWS: the batches join up.
    ids = seeded_ids(seed('--count', '12000', '--days', '1'))
    assert len(ids) == 12000
    with app.app_context():
        count, distinct = db.session.execute(db.select(
            db.func.count(), db.func.count(db.distinct(User.nickname)))).one()
    assert count == distinct == 12000
    assert rows()[-1]['nickname'] == 'seed-12000'


@pytest.mark.parametrize('options', [
    (),
    ('--count', '0'),
    ('--count', '-5'),
    ('--count', 'many'),
    ('--count', '3', '--password', ''),
    ('--count', '3', '--days', '0'),
    ('--count', '3', '--days', '3651'),
    ('--count', '3', '--days', 'x'),
    ('--count', '3', '--colour', 'red'),
])
def test_bad_options_write_nothing(seed, rows, options):
    result = seed(*options)
    assert result.exit_code == 2
    assert 'Usage: ' in result.output
    assert rows() == []
