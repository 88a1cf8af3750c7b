"""``flask seed-messages``: many messages at once, through the same table,
rendered as the service renders them, with nothing fetched."""
import pytest

from microflack_common.seeding import SECONDS_PER_DAY
from microflack_common.testing import seeded_ids
from microflack_common.utils import timestamp
from microflack_messages import tasks
from microflack_messages.render import render


@pytest.fixture
def seed(app):
    """seed(option, ...) runs ``flask seed-messages`` with those options."""
    runner = app.test_cli_runner()

    def run(*options):
        return runner.invoke(args=['seed-messages', *options])
    return run


def test_creates_the_messages(seed, rows, pusher, app, monkeypatch):
    submitted = []
    monkeypatch.setattr(tasks.background(app), 'submit',
                        lambda *task: submitted.append(task))
    started = timestamp()
    result = seed('--count', '600', '--user-ids', '5-9', '--days', '3')
    ids = seeded_ids(result)
    messages = rows()
    assert len(ids) == len(messages) == 600
    assert [message['id'] for message in messages] == list(ids)
    # Authors from the range, each of them.
    assert {message['user_id'] for message in messages} == set(range(5, 10))
    times = [message['created_at'] for message in messages]
    assert times == sorted(times)
    assert all(started - 3 * SECONDS_PER_DAY <= t <= timestamp()
               for t in times)
    assert times[-1] - times[0] > 2 * SECONDS_PER_DAY   # spread evenly
    for message in messages:
        assert message['updated_at'] == message['created_at']
        assert message['edited_at'] is None
    # Bulk inserts: no pushes, no link expansion.
    assert pusher.pushes == []
    assert submitted == []


def test_sources_look_like_chat_and_html_is_rendered(seed, rows):
    seeded_ids(seed('--count', '2000', '--user-ids', '1-3'))
    messages = rows()
    for message in messages:
        assert message['html'] == render(message['source'])
    sources = {message['source'] for message in messages}
    assert len(sources) >= 200
    html = [message['html'] for message in messages]
    assert any('<em>' in h or '<strong>' in h or '<code>' in h for h in html)
    assert any('<a href="https://example.' in h for h in html)
    assert sum('<' not in h for h in html) > len(html) / 2   # mostly plain


def test_the_api_serves_seeded_messages(seed, client, rows):
    ids = seeded_ids(seed('--count', '5', '--user-ids', '42'))
    stored = rows()[-1]
    rv = client.get(f'/api/messages/{ids[-1]}')
    assert rv.status == 200
    assert rv.json['user_id'] == 42
    assert rv.json['html'] == stored['html']
    assert rv.json['created_at'] == stored['created_at']
    assert rv.json['edited_at'] is None


def test_ids_printed_are_the_new_ones(seed, add_message, rows):
    before = add_message('already here')
    ids = seeded_ids(seed('--count', '7', '--user-ids', '1-2'))
    assert ids.start > before
    assert {message['id'] for message in rows()} == {before, *ids}


def test_many_messages_in_several_batches(seed, rows):
    ids = seeded_ids(seed('--count', '12000', '--user-ids', '1-100',
                           '--days', '1'))
    assert len(ids) == 12000
    times = [message['created_at'] for message in rows()]
    assert len(times) == 12000
    assert times == sorted(times)


@pytest.mark.parametrize('options', [
    (),
    ('--count', '10'),
    ('--user-ids', '1-5'),
    ('--count', '0', '--user-ids', '1-5'),
    ('--count', 'ten', '--user-ids', '1-5'),
    ('--count', '10', '--user-ids', '5-1'),
    ('--count', '10', '--user-ids', '0-5'),
    ('--count', '10', '--user-ids', 'all'),
    ('--count', '10', '--user-ids', '1-5', '--days', '0'),
    ('--count', '10', '--user-ids', '1-5', '--days', '3651'),
    ('--count', '10', '--user-ids', '1-5', '--follow-links'),
])
def test_bad_options_write_nothing(seed, rows, options):
    result = seed(*options)
    assert result.exit_code == 2
    assert 'Usage: ' in result.output
    assert rows() == []
