"""The tests inherit nothing of the host's installation: neither the
settings that setup-all-in-one.sh saved in ~/.microflack (its runtime,
channel, ports, secrets) nor the same settings exported by the caller
(after ``source mfvars``) reach mftest's suites or the private platforms.
"""
import subprocess

import pytest
from mfplatform import ADMIN, Platform

# What a host that ran `setup-all-in-one.sh --docker` with LB_PORT=8080
# has saved, and what `source microflack_admin/mfvars` exports from it.
HOST_SETTINGS = {
    'MICROFLACK_RUNTIME': 'docker', 'REDIS_CHANNEL': 'host-channel',
    'LB_PORT': '8080', 'LB': 'http://127.0.0.1:8080', 'ETCD_PORT': '23790',
    'ETCD': 'http://127.0.0.1:23790', 'REDIS': '127.0.0.1:16379',
    'LOGS_PORT': '11095', 'MF_DB_PREFIX': 'hostdb_',
    'MF_IMAGE_PREFIX': 'host_', 'MICROFLACK_IP': '127.0.0.9',
    'LB_BIND': '0.0.0.0', 'LOGS_BIND': '0.0.0.0', 'INSTANCE_BIND': '0.0.0.0',
    'DB_HOST': '192.0.2.10', 'DB_PORT': '13306',
    'DB_ADMIN_CNF': '/etc/host-admin.cnf',
}
HOST_SECRETS = {'SECRET_KEY': 'host-secret-key',
                'STATS_PASSWORD': 'host-stats-password'}
# Other things a caller's shell may hold that have no place in a test.
STRAY = {'PYTHONPATH': '/somewhere/else', 'FLASK_CONFIG': 'prod',
         'LB_SERVER_MAXCONN': '1', 'SOME_UNRELATED_SETTING': 'x'}
# What legitimately passes: the user, the network's proxies, the test
# command's own settings.
PASSING = {'LANG': 'C.UTF-8', 'http_proxy': 'http://127.0.0.1:3128',
           'TEST_REDIS': '127.0.0.1:6379', 'MF_PYTHON': 'python3'}


@pytest.fixture
def host_home(tmp_path):
    """A HOME whose ~/.microflack holds an installation's settings."""
    home = tmp_path / 'user'
    mf_home = home / '.microflack'
    (mf_home / 'secrets').mkdir(parents=True)
    (mf_home / 'microflack.conf').write_text(''.join(
        f'{name}=${{{name}:-{value}}}\n'
        for name, value in HOST_SETTINGS.items()
        if name not in ('LB', 'MF_IMAGE_PREFIX')))
    (mf_home / 'secrets' / 'secrets.env').write_text(''.join(
        f'{name}={value}\n' for name, value in HOST_SECRETS.items()))
    return home


def caller_environment(home, path):
    """The environment of a shell that sourced the host's mfvars."""
    return {'PATH': path, 'HOME': str(home),
            'MF_HOME': str(home / '.microflack'),
            'WHEELHOUSE': str(home / '.microflack' / 'wheelhouse'),
            **HOST_SETTINGS, **HOST_SECRETS, **STRAY, **PASSING}


def assert_no_host_setting(env, home):
    for name, value in {**HOST_SETTINGS, **HOST_SECRETS, **STRAY}.items():
        assert env.get(name) != value, name
    assert not any(str(home / '.microflack') in value
                   for value in env.values())


def parse_env(output):
    return dict(line.split('=', 1) for line in output.splitlines()
                if '=' in line)


def test_mftest_suites_get_the_project_defaults(host_home, tmp_path):
    test_home = tmp_path / 'test-home'
    env = caller_environment(host_home, '/usr/local/bin:/usr/bin:/bin')
    env['MF_TEST_HOME'] = str(test_home)
    result = subprocess.run([str(ADMIN / 'bin' / 'mftest'), '--print-env'],
                            env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    suites = parse_env(result.stdout)
    assert_no_host_setting(suites, host_home)
    # The project's defaults (mfvars), with the test command's own home.
    assert suites['MICROFLACK_RUNTIME'] == 'native'
    assert suites['REDIS_CHANNEL'] == 'flask-socketio'
    assert suites['LB_PORT'] == '80'
    assert suites['ETCD'] == 'http://127.0.0.1:2379'
    assert (suites['DB_HOST'], suites['DB_PORT']) == ('127.0.0.1', '3306')
    assert suites['DB_ADMIN_CNF'] == ''
    assert suites['INSTANCE_BIND'] == suites['MICROFLACK_IP'] == '127.0.0.1'
    assert suites['MF_HOME'] == str(test_home)
    assert suites['WHEELHOUSE'] == str(test_home / 'wheelhouse')
    for name, value in PASSING.items():
        assert suites[name] == value, name
    assert suites['HOME'] == str(host_home)
    assert suites['MF_TEST_HOME'] == str(test_home)
    assert not test_home.exists()       # printing changes nothing


def test_the_tests_mariadb_is_the_test_commands_setting(host_home, tmp_path,
                                                       monkeypatch):
    """TEST_DB_HOST, TEST_DB_PORT and TEST_DB_ADMIN_CNF pass (the host's
    DB_* do not) and become the suites' and the platforms' DB_*."""
    given = {'TEST_DB_HOST': '127.0.0.5', 'TEST_DB_PORT': '3307',
             'TEST_DB_ADMIN_CNF': str(tmp_path / 'admin.cnf')}
    env = {**caller_environment(host_home, '/usr/local/bin:/usr/bin:/bin'),
           **given, 'MF_TEST_HOME': str(tmp_path / 'test-home')}
    result = subprocess.run([str(ADMIN / 'bin' / 'mftest'), '--print-env'],
                            env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    suites = parse_env(result.stdout)
    assert (suites['DB_HOST'], suites['DB_PORT'], suites['DB_ADMIN_CNF']) \
        == tuple(given.values())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    platform = Platform(tmp_path / 'mfhome')
    assert (platform.env['DB_HOST'], platform.env['DB_PORT'],
            platform.env['DB_ADMIN_CNF']) == tuple(given.values())


def test_mftest_print_env_takes_no_suite():
    result = subprocess.run([str(ADMIN / 'bin' / 'mftest'), '--print-env',
                             'common'], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert 'usage: mftest' in result.stderr


def test_private_platforms_get_the_project_defaults(host_home, tmp_path,
                                                    monkeypatch):
    for name, value in caller_environment(
            host_home, '/usr/local/bin:/usr/bin:/bin').items():
        monkeypatch.setenv(name, value)
    platform = Platform(tmp_path / 'mfhome')
    assert_no_host_setting(platform.env, host_home)
    for name, value in PASSING.items():
        assert platform.env[name] == value, name
    # What mfvars makes of it inside the platform: the project's defaults
    # where the test gave nothing, the test's own settings elsewhere.
    seen = parse_env(subprocess.run(
        ['bash', '-c', f'source {ADMIN}/mfvars && env'], env=platform.env,
        capture_output=True, text=True, check=True, timeout=30).stdout)
    assert_no_host_setting(seen, host_home)
    assert seen['MICROFLACK_RUNTIME'] == 'native'
    assert seen['MF_IMAGE_PREFIX'] == 'microflack_'
    assert seen['MF_HOME'] == str(tmp_path / 'mfhome')
    assert seen['REDIS'] == PASSING['TEST_REDIS']
    assert seen['REDIS_CHANNEL'] == platform.env['REDIS_CHANNEL']
    assert seen['ETCD'] == platform.etcd
    assert seen['LB'] == platform.lb


def test_a_platform_setting_given_by_the_test_wins(host_home, tmp_path,
                                                   monkeypatch):
    monkeypatch.setenv('MICROFLACK_RUNTIME', 'native')
    platform = Platform(tmp_path / 'mfhome', {'MICROFLACK_RUNTIME': 'docker'})
    assert platform.env['MICROFLACK_RUNTIME'] == 'docker'
