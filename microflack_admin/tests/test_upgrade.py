"""Zero-downtime upgrades in the native runtime: mfupgrade try, roll and
abort on the shared platform, older releases built from git running side
by side with the current one, and rolls under load.

Each test leaves one instance of the newest build of what it touched.
"""
import subprocess
import uuid
from contextlib import contextmanager

import pytest
from upgrades import (
    bearer,
    live,
    older_release_ref,
    restore_one,
    roll_messages_under_load,
    roll_socketio_with_clients,
    roll_users_under_load,
    run_instances,
    version,
)


def state_file(platform):
    return platform.home / 'run' / 'upgrade.state'


@contextmanager
def newer_build(platform, service):
    """The current source built again under a newer tag (a new release
    whose code happens to be the same). Afterwards the build is removed
    and one instance of the newest remaining build runs."""
    tag = f'{version(service)}.{uuid.uuid4().int % 1000 + 1}'
    platform.run('mfbuild', '--tag', tag, service)
    try:
        yield tag
    finally:
        platform.run('mfkill', service)
        subprocess.run(
            ['rm', '-rf', str(platform.home / 'releases' / service / tag)],
            check=True)
        platform.run('mfrun', service)


@pytest.mark.parametrize('args, message', [
    ([], 'usage: mfupgrade'),
    (['bogus'], 'unknown command'),
    (['try'], 'usage: mfupgrade'),
    (['try', 'nosuch'], "unknown service 'nosuch'"),
    (['try', 'tokens', '9.9.9'], 'no build tokens 9.9.9'),
    (['abort'], 'no upgrade is pending'),
    (['roll'], 'no try is pending'),
])
def test_bad_arguments(platform, args, message):
    result = platform.run('mfupgrade', *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert 'Traceback' not in result.stderr
    assert not state_file(platform).exists()


def test_nothing_to_upgrade(platform):
    result = platform.run('mfupgrade', 'roll', 'ui', check=False)
    assert result.returncode != 0
    assert 'nothing to upgrade' in result.stderr


def test_try_then_abort_restores_the_old_instances(platform):
    old = set(platform.instances('tokens'))
    with newer_build(platform, 'tokens') as tag:
        tried = platform.run('mfupgrade', 'try', 'tokens').stdout.strip()
        assert set(platform.instances('tokens')) == old | {tried}
        assert f'_v{tag}_' in tried
        assert 'tokens' in platform.run('mfupgrade', 'status').stdout
        # Only one pending upgrade; a roll of another service is refused.
        again = platform.run('mfupgrade', 'try', 'tokens', check=False)
        assert again.returncode != 0 and 'pending' in again.stderr
        other = platform.run('mfupgrade', 'roll', 'users', check=False)
        assert other.returncode != 0 and 'pending' in other.stderr
        # The state outlived the shells above; abort undoes the try.
        assert state_file(platform).exists()
        platform.run('mfupgrade', 'abort')
        assert set(platform.instances('tokens')) == old
        assert not state_file(platform).exists()
        assert 'no upgrade is pending' in platform.run(
            'mfupgrade', 'status').stdout


def test_try_then_roll(platform):
    with newer_build(platform, 'tokens') as tag:
        run_instances(platform, 'tokens', version('tokens'), 2)
        tried = platform.run('mfupgrade', 'try', 'tokens').stdout.strip()
        platform.run('mfupgrade', 'roll')
        instances = live(platform, 'tokens')
        assert tried in instances
        assert sorted(instances.values()) == [tag, tag]
        assert not state_file(platform).exists()


def test_roll_stops_when_the_new_build_is_unhealthy(platform):
    with newer_build(platform, 'tokens') as tag:
        boot = platform.home / 'releases' / 'tokens' / tag / 'boot.sh'
        boot.write_text('#!/bin/sh\necho "this build is broken" >&2\n'
                        'exit 1\n')
        old = run_instances(platform, 'tokens', version('tokens'), 2)
        result = platform.run('mfupgrade', 'roll', 'tokens', check=False)
        assert result.returncode != 0
        assert 'not healthy' in result.stderr and 'keep serving' in result.stderr
        assert sorted(platform.instances('tokens')) == sorted(old)
        token = platform.user_with_token(f'unhealthy_{uuid.uuid4().hex[:6]}')
        rv = platform.http.get(f'{platform.lb}/api/tokens', timeout=10,
                               headers=bearer(token))
        assert rv.status_code == 200
        platform.run('mfupgrade', 'abort')
        assert sorted(platform.instances('tokens')) == sorted(old)


def direct(platform, instance):
    port = instance.rsplit('_', 1)[1]
    return f'http://127.0.0.1:{port}'


def test_old_and_new_messages_side_by_side(platform):
    """messages 1.0.1, the release before edited_at (built from git), and
    the current one serve together against the database migrated for the
    current one: each reads what the other wrote; only the new one knows
    edited_at."""
    ref, old_tag = older_release_ref('messages', '1.0.1')
    platform.run('mfbuild', '--from', ref, 'messages')
    old = run_instances(platform, 'messages', old_tag, 1)[0]
    try:
        new = platform.run('mfupgrade', 'try', 'messages').stdout.strip()
        assert f"_v{version('messages')}_" in new
        token = platform.user_with_token(f'side_{uuid.uuid4().hex[:6]}')
        http = platform.http
        rv = http.post(f'{direct(platform, old)}/api/messages', timeout=10,
                       headers=bearer(token), json={'source': 'from the old'})
        assert rv.status_code == 201, rv.text
        message_id = rv.json()['id']
        assert 'edited_at' not in rv.json()
        rv = http.get(f'{direct(platform, new)}/api/messages/{message_id}',
                      timeout=10)
        assert rv.json()['source'] == 'from the old'
        assert rv.json()['edited_at'] is None
        rv = http.put(f'{direct(platform, new)}/api/messages/{message_id}',
                      timeout=10, headers=bearer(token),
                      json={'source': 'edited by the new'})
        assert rv.status_code == 204, rv.text
        rv = http.get(f'{direct(platform, new)}/api/messages/{message_id}',
                      timeout=10)
        assert rv.json()['edited_at'] is not None
        rv = http.get(f'{direct(platform, old)}/api/messages/{message_id}',
                      timeout=10)
        assert rv.json()['source'] == 'edited by the new'
        assert 'edited_at' not in rv.json()
        rv = http.post(f'{direct(platform, new)}/api/messages', timeout=10,
                       headers=bearer(token), json={'source': 'from the new'})
        assert rv.status_code == 201
        listed = http.get(f'{direct(platform, old)}/api/messages',
                          timeout=10).json()['messages']
        assert 'from the new' in [m['source'] for m in listed]
        platform.run('mfupgrade', 'roll')
        assert list(live(platform, 'messages').values()) == [version('messages')]
    finally:
        platform.run('mfupgrade', 'abort', check=False)
        restore_one(platform, 'messages')


def test_roll_messages_under_load(platform):
    ref, old_tag = older_release_ref('messages')
    platform.run('mfbuild', '--from', ref, 'messages')
    try:
        roll_messages_under_load(platform, old_tag, version('messages'))
    finally:
        restore_one(platform, 'messages')


def test_roll_users_under_load(platform):
    with newer_build(platform, 'users') as tag:
        roll_users_under_load(platform, tag)


def test_roll_socketio_reconnects_every_client(platform):
    with newer_build(platform, 'socketio') as tag:
        roll_socketio_with_clients(platform, tag)
