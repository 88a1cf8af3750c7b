"""mfseed on the installed platform: generated users and messages, seen
through the public API, and bad arguments that write nothing."""
import re
import time

from mfplatform import table_ids

SECONDS_PER_DAY = 24 * 60 * 60


def id_ranges(output):
    """{'users': range, 'messages': range} from mfseed's output."""
    ranges = {}
    for line in output.splitlines():
        what, first, last = re.fullmatch(r'(\w+) (\d+)-(\d+)', line).groups()
        ranges[what] = range(int(first), int(last) + 1)
    return ranges


def seed_and_check(platform, user_count=50, message_count=300):
    """mfseed: the users and messages it reports are there, through the
    load balancer (also used by the Docker runtime's tests)."""
    lb, http = platform.lb, platform.http
    started = time.time()
    result = platform.run('mfseed', '--users', str(user_count),
                          '--messages', str(message_count), '--days', '2',
                          timeout=300)
    ranges = id_ranges(result.stdout)
    users, messages = ranges['users'], ranges['messages']
    assert (len(users), len(messages)) == (user_count, message_count)

    seeded = [http.get(f'{lb}/api/users/{user_id}', timeout=10)
              for user_id in (users[0], users[-1])]
    assert [rv.status_code for rv in seeded] == [200, 200]
    first, last = (rv.json() for rv in seeded)
    assert re.fullmatch(r'seed-\d{5}', first['nickname'])
    assert not first['online']
    assert started - 2 * SECONDS_PER_DAY <= first['created_at'] \
        <= last['created_at'] <= time.time()
    # A seeded user logs in with the documented password.
    rv = http.post(f'{lb}/api/tokens', auth=(last['nickname'], 'seed'),
                   timeout=10)
    assert rv.status_code == 200, rv.text
    assert rv.json()['token']

    oldest, middle, newest = (
        http.get(f'{lb}/api/messages/{message_id}', timeout=10).json()
        for message_id in (messages[0], messages[len(messages) // 2],
                           messages[-1]))
    for message in (oldest, middle, newest):
        assert message['user_id'] in users
        assert message['source'] and message['html']
        assert message['updated_at'] == message['created_at']
        assert message['edited_at'] is None
    assert started - 2 * SECONDS_PER_DAY <= oldest['created_at'] \
        < middle['created_at'] < newest['created_at'] <= time.time()
    # The list without paging holds the last day's: the newest is there.
    listed = http.get(f'{lb}/api/messages', timeout=30).json()['messages']
    assert newest['id'] in {message['id'] for message in listed}


def test_mfseed_fills_the_platform(platform):
    seed_and_check(platform)


def test_bad_arguments_write_nothing(platform):
    prefix = platform.env['MF_DB_PREFIX']
    before = {table: table_ids(f'{prefix}{table}', table)
              for table in ('users', 'messages')}
    for arguments in (['--users', '5', '--days', '0'],
                      ['--messages', '10'],
                      ['--users', 'five'],
                      ['--users', '5', '--colour', 'red']):
        result = platform.run('mfseed', *arguments, check=False)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stderr.startswith('usage: mfseed '), arguments
        assert result.stdout == ''
    assert {table: table_ids(f'{prefix}{table}', table)
            for table in before} == before
