"""mfclean on the shared (native) platform: old releases go; those that
instances run, and the newest ones, stay."""
import fcntl
import shutil

import pytest
from upgrades import version

SERVICE = 'tokens'


def releases(platform):
    return sorted(path.name for path in
                  (platform.home / 'releases' / SERVICE).iterdir()
                  if not path.name.startswith('.'))


@pytest.mark.parametrize('args, message', [
    ([], 'usage: mfclean'),
    (['--keep'], 'usage: mfclean'),
    (['--bogus', SERVICE], 'usage: mfclean'),
    (['--keep', '0', SERVICE], '--keep takes a whole number of at least 1'),
    (['--keep=two', SERVICE], '--keep takes a whole number of at least 1'),
    (['nosuch'], "unknown service 'nosuch'"),
])
def test_bad_arguments(platform, args, message):
    before = releases(platform)
    result = platform.run('mfclean', *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert 'Traceback' not in result.stderr
    assert releases(platform) == before


def test_not_while_an_upgrade_runs(platform):
    before = releases(platform)
    with open(platform.home / 'run' / 'upgrade.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = platform.run('mfclean', '--keep', '1', SERVICE, check=False)
    assert result.returncode == 1
    assert 'an mfupgrade is running' in result.stderr
    assert releases(platform) == before


def test_old_builds_go_the_needed_ones_stay(platform):
    current = version(SERVICE)
    # Two older builds (in version order): one runs an instance, one not.
    for tag in ('0.0.1', '0.0.2'):
        platform.run('mfbuild', '--tag', tag, SERVICE)
    old = platform.run('mfrun', SERVICE, '0.0.1').stdout.strip()
    try:
        assert releases(platform) == ['0.0.1', '0.0.2', current]
        # The newest two, and the one in use: nothing to remove.
        result = platform.run('mfclean', SERVICE)
        assert result.stdout == ''
        assert 'nothing to remove' in result.stderr
        result = platform.run('mfclean', '--dry-run', '--keep', '1', SERVICE)
        assert result.stdout == f'would remove {SERVICE} 0.0.2\n'
        assert releases(platform) == ['0.0.1', '0.0.2', current]
        result = platform.run('mfclean', '--keep', '1', SERVICE)
        assert result.stdout == f'removed {SERVICE} 0.0.2\n'
        assert releases(platform) == ['0.0.1', current]
        rv = platform.http.get(
            f"http://127.0.0.1:{old.rsplit('_', 1)[1]}/health", timeout=10)
        assert rv.json()['version'] == '0.0.1'
        # Once its instance is gone, so may the build be.
        platform.run('mfkill', old)
        result = platform.run('mfclean', '--keep', '1', 'all')
        assert f'removed {SERVICE} 0.0.1\n' in result.stdout
        assert releases(platform) == [current]
    finally:
        if old in platform.instances(SERVICE):
            platform.run('mfkill', old)
        for tag in ('0.0.1', '0.0.2'):
            shutil.rmtree(platform.home / 'releases' / SERVICE / tag,
                          ignore_errors=True)
