"""The seed commands' shared mechanics: id ranges, spread timestamps, the
chat lines, and the batched bulk insert (on SQLite files here; the
services' suites run their seed commands on MariaDB too)."""
import re
import time

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from microflack_common import seeding
from microflack_common.seeding import (
    SECONDS_PER_DAY,
    IdRange,
    bulk_insert,
    chat_sources,
    id_range_line,
    parse_id_range,
    spread_timestamps,
)
from microflack_common.validation import MAX_ID

NOW = 1_800_000_000


@pytest.mark.parametrize('text, expected', [
    ('12-345', range(12, 346)),
    ('7', range(7, 8)),
    (' 3 - 5 ', range(3, 6)),
    ('1-1', range(1, 2)),
    (f'1-{MAX_ID}', range(1, MAX_ID + 1)),
])
def test_id_ranges(text, expected):
    assert parse_id_range(text) == expected


@pytest.mark.parametrize('text', [
    '', '-', 'a-b', '5-3', '0-3', '-3', '3-', '1-2-3', '1,2', '1.5-3',
    f'1-{MAX_ID + 1}', '+1-3',
])
def test_bad_id_ranges(text):
    with pytest.raises(ValueError):
        parse_id_range(text)


def test_a_bad_id_range_is_a_usage_error():
    @click.command()
    @click.option('--ids', type=IdRange(), required=True)
    def show(ids):
        click.echo(f'{ids.start} {ids.stop}')

    runner = CliRunner()
    assert runner.invoke(show, ['--ids', '4-6']).output == '4 7\n'
    result = runner.invoke(show, ['--ids', '6-4'])
    assert result.exit_code == 2
    assert "Invalid value for '--ids'" in result.output


def test_id_range_line():
    assert id_range_line(range(12, 10012)) == 'ids 12-10011'
    assert id_range_line(range(5, 6)) == 'ids 5-5'
    assert id_range_line(range(0)) == 'ids none'


@pytest.mark.parametrize('count, days', [(1, 1), (7, 1), (1000, 30),
                                         (200_000, 1)])
def test_timestamps_are_spread_over_the_window(count, days):
    times = list(spread_timestamps(count, days, now=NOW))
    span = days * SECONDS_PER_DAY
    assert len(times) == count
    assert times[-1] == NOW
    assert all(NOW - span <= t <= NOW for t in times)
    assert times == sorted(times)
    # Evenly: the gaps differ by at most a second (all 0 or 1 when there
    # are more times than seconds).
    gaps = {b - a for a, b in zip(times, times[1:], strict=False)}
    assert max(gaps, default=0) - min(gaps, default=0) <= 1
    if count <= span:
        assert min(gaps, default=1) >= 1     # strictly increasing


def test_timestamps_default_to_now():
    before = int(time.time())
    [only] = spread_timestamps(1, 1)
    assert before <= only <= int(time.time())


def test_chat_sources_are_distinct_varied_and_deterministic():
    sources = chat_sources(400)
    assert len(sources) == len(set(sources)) == 400
    assert chat_sources(400) == sources
    assert chat_sources(400, seed=1) != sources
    assert chat_sources(10) == chat_sources(10)
    assert all(0 < len(source) <= 200 for source in sources)
    markdown = [s for s in sources if re.search(r'[*_`]|\]\(', s)]
    links = [s for s in sources if 'https://' in s]
    plain = [s for s in sources if s not in markdown and s not in links]
    assert len(markdown) >= 40 and len(links) >= 30 and len(plain) >= 150
    # Links point only to the reserved example domains.
    hosts = set(re.findall(r'https://([^/\s)]+)', ' '.join(sources)))
    assert hosts <= {'example.com', 'example.org', 'example.net'}


def test_asking_for_more_sources_than_there_are_fails(monkeypatch):
    # It gives up once new lines have become rare (sooner here: there are
    # tens of thousands to make).
    monkeypatch.setattr(seeding, '_GIVE_UP_AFTER', 20)
    with pytest.raises(ValueError, match='cannot make 1000000 distinct'):
        chat_sources(10 ** 6)


# -- bulk_insert -------------------------------------------------------

metadata = sa.MetaData()
things = sa.Table(
    'things', metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('name', sa.String(40), nullable=False),
)


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'seed.sqlite'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def stored(engine):
    with engine.connect() as connection:
        return connection.execute(
            sa.select(things.c.id, things.c.name).order_by(things.c.id)).all()


def named(count, start=0):
    return ({'name': f'thing {n}'} for n in range(start, start + count))


def test_bulk_insert_in_batches(engine, capsys):
    transactions = []
    sa.event.listen(engine, 'commit', lambda conn: transactions.append(1))
    ids = bulk_insert(engine, things, named(25), 25, 'things', batch_rows=10)
    assert ids == range(1, 26)
    assert stored(engine) == [(n + 1, f'thing {n}') for n in range(25)]
    assert len(transactions) == 3          # 10 + 10 + 5 rows
    progress = capsys.readouterr()
    assert progress.out == ''              # stdout stays for results
    assert progress.err.splitlines()[-1].startswith('25 of 25 things (')


def test_progress_is_shown_at_each_tenth(engine, capsys):
    bulk_insert(engine, things, named(100), 100, 'things', batch_rows=5)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(' (')[0] for line in lines] == \
        [f'{n} of 100 things' for n in range(10, 101, 10)]


def test_ids_follow_the_rows_already_there(engine):
    bulk_insert(engine, things, named(3), 3, 'things')
    with engine.begin() as connection:
        connection.execute(things.delete().where(things.c.id == 2))
    assert bulk_insert(engine, things, named(4, 3), 4, 'things') == \
        range(4, 8)


def test_rows_others_write_meanwhile_are_reported(engine, capsys):
    def rows_with_a_visitor():
        yield from named(5)
        # The first batch is committed: someone else posts now.
        with engine.begin() as connection:
            connection.execute(things.insert(), {'name': 'visitor'})
        yield from named(5, 5)

    ids = bulk_insert(engine, things, rows_with_a_visitor(), 10, 'things',
                      batch_rows=5)
    assert ids == range(1, 12)
    assert 'visitor' in [name for _, name in stored(engine)]
    assert 'warning: ids 1-11 hold 11 things, not the 10 inserted here' \
        in capsys.readouterr().err


def test_an_interrupted_run_keeps_its_committed_batches(engine):
    def failing_rows():
        yield from named(7)
        raise RuntimeError('interrupted')

    with pytest.raises(RuntimeError):
        bulk_insert(engine, things, failing_rows(), 10, 'things',
                    batch_rows=3)
    # Batches of 3 and 3 were committed; the third had only one row when
    # the rows ran out, and never reached the database.
    assert len(stored(engine)) == 6


def test_a_failing_batch_is_rolled_back_whole(engine):
    rows = [*named(4), {'name': None}, *named(2, 4)]     # NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        bulk_insert(engine, things, rows, len(rows), 'things', batch_rows=3)
    assert [name for _, name in stored(engine)] == \
        ['thing 0', 'thing 1', 'thing 2']
