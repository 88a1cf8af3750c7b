"""The whole platform on one host, as setup-all-in-one.sh installs it:
real etcd, HAProxy, MariaDB, Redis and gunicorn, on loopback ports."""
import base64
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest
from mfbench_faults import supervisorctl
from mfplatform import ADMIN, SteadyClient, api_flow

SERVICES = ['ui', 'users', 'tokens', 'messages', 'socketio']


def snapshot(platform):
    """What a second setup must leave as it was."""
    secrets = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
               for path in (platform.home / 'secrets').iterdir()}
    releases = {str(path.relative_to(platform.home)): path.read_text()
                for path in (platform.home / 'releases').glob('*/*/.checksum')}
    upstreams = {service: platform.instances(service) for service in SERVICES}
    return secrets, releases, upstreams


def test_setup_starts_everything(platform):
    output = platform.setup_output.stdout + platform.setup_output.stderr
    assert f'open {platform.lb_https}/' in output
    assert 'ca.crt: trust it' in output
    assert 'mfvars' in output
    for service in SERVICES:
        assert len(platform.instances(service)) == 1, service
    rv = platform.http.get(platform.lb + '/', timeout=10)
    assert rv.status_code == 200
    assert '<html' in rv.text.lower()


def test_secrets_are_private(platform):
    folder = platform.home / 'secrets'
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len(platform.secret('JWT_SECRET_KEY')) >= 32


def test_second_setup_changes_nothing(platform):
    before = snapshot(platform)
    platform.run('install/setup-all-in-one.sh', timeout=900)
    assert snapshot(platform) == before


def test_mfvars_exports_the_environment(platform):
    script = ('source mfvars && for v in LB ETCD REDIS SECRET_KEY '
              'JWT_SECRET_KEY SERVICES SERVICES_WITH_DB MICROFLACK_IP; do '
              'printf "%s=%s\\n" "$v" "${!v}"; done; command -v mfrun')

    env = {k: v for k, v in platform.env.items()
           if k not in ('LB_PORT', 'ETCD_PORT', 'LOGS_PORT', 'REDIS',
                        'MICROFLACK_IP', 'MF_DB_PREFIX')}
    out = subprocess.run(['bash', '-c', script], cwd=ADMIN, env=env,
                         capture_output=True, text=True, check=True).stdout
    values = dict(line.split('=', 1) for line in out.splitlines()
                  if '=' in line)
    assert values['LB'] == platform.lb
    assert values['ETCD'] == platform.etcd
    assert values['JWT_SECRET_KEY'] == platform.secret('JWT_SECRET_KEY')
    assert values['SERVICES'] == 'ui users tokens messages socketio'
    assert values['SERVICES_WITH_DB'] == 'users messages'
    assert values['MICROFLACK_IP'] == '127.0.0.1'
    assert out.strip().endswith(str(ADMIN / 'bin' / 'mfrun'))


def test_api_flow_through_the_load_balancer(platform):
    api_flow(platform, 'susan')


def test_bad_requests_get_json_errors_through_the_lb(platform):
    lb, http = platform.lb, platform.http
    rv = http.post(f'{lb}/api/users', data='not json', timeout=10,
                   headers={'Content-Type': 'application/json'})
    assert rv.status_code == 400
    assert rv.json()['error']
    rv = http.get(f'{lb}/api/users', timeout=10,
                  headers={'Authorization': 'Bearer garbage'})
    assert rv.status_code == 401
    assert rv.headers['WWW-Authenticate'] == \
        'Bearer realm="Authentication Required"'


def test_stats_need_credentials(platform):
    assert platform.http.get(f'{platform.lb}/stats',
                             timeout=5).status_code == 401
    rows = platform.stats()
    assert ('users_backend', 'BACKEND') in rows


def per_server_requests(platform, backend):
    return {server: int(row['stot'])
            for (name, server), row in platform.stats().items()
            if name == backend and server not in ('BACKEND', 'FRONTEND')}


def test_two_instances_share_the_traffic(platform):
    instance = platform.run('mfrun', 'tokens').stdout.strip()
    assert instance.startswith('tokens_v')
    assert instance in platform.instances('tokens')
    platform.wait_for(lambda: len(per_server_requests(
        platform, 'tokens_backend')) == 2, timeout=2, what='routed')
    before = per_server_requests(platform, 'tokens_backend')
    for _ in range(20):
        platform.http.get(f'{platform.lb}/api/tokens', timeout=5)
    after = per_server_requests(platform, 'tokens_backend')
    assert all(after[server] - before[server] >= 5 for server in after), \
        (before, after)
    platform.run('mfkill', instance)
    assert instance not in platform.instances('tokens')


def read_messages(session, platform):
    return session.get(f'{platform.lb}/api/messages', timeout=10)


def test_mfkill_one_of_two_under_load(platform):
    instance = platform.run('mfrun', 'messages').stdout.strip()
    platform.wait_for(lambda: len(per_server_requests(
        platform, 'messages_backend')) == 2, timeout=2, what='routed')
    with SteadyClient(lambda s: read_messages(s, platform)) as client:
        time.sleep(0.5)
        platform.run('mfkill', instance)
        time.sleep(0.5)
    assert client.count > 20
    assert client.failures == []
    assert len(per_server_requests(platform, 'messages_backend')) == 1


def test_kill_9_one_of_two_under_load(platform):
    instance = platform.run('mfrun', 'messages').stdout.strip()
    platform.wait_for(lambda: len(per_server_requests(
        platform, 'messages_backend')) == 2, timeout=2, what='routed')
    info = (platform.home / 'run' / 'instances' / f'{instance}.info')
    pid = int(dict(line.split('=', 1) for line in
                   info.read_text().splitlines())['PID'])
    def replaced():
        # The platform's supervisor may start it again before two health
        # checks fail: a new run, as good as out of rotation.
        out = supervisorctl(platform, 'pid', instance).stdout.strip()
        return out.isdigit() and int(out) not in (0, pid)
    try:
        with SteadyClient(lambda s: read_messages(s, platform)) as client:
            time.sleep(0.5)
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            killed = time.monotonic()
            platform.wait_for(
                lambda: replaced() or platform.stats()[
                    ('messages_backend', instance)]['status'].startswith(
                        'DOWN'), timeout=5, interval=0.1,
                what='dead instance marked down or replaced')
            out_after = time.monotonic() - killed
            time.sleep(0.5)
        assert out_after < 3
        assert client.count > 20
        assert client.failures == []
    finally:
        platform.run('mfkill', instance)     # the dead one, or its new run


def test_service_settings_file(platform):
    settings = platform.home / 'config' / 'tokens.env'
    settings.parent.mkdir(exist_ok=True)
    settings.write_text('# shorter tokens on this host\nTOKEN_EXPIRATION=120\n')
    try:
        platform.run('mfkill', 'tokens')
        platform.run('mfrun', 'tokens')
        platform.http.post(f'{platform.lb}/api/users', timeout=10,
                           json={'nickname': 'shortlived', 'password': 'pw'})
        rv = platform.http.post(f'{platform.lb}/api/tokens', timeout=10,
                                auth=('shortlived', 'pw'))
        claims = json.loads(base64.urlsafe_b64decode(
            rv.json()['token'].split('.')[1] + '=='))
        assert 100 < claims['exp'] - time.time() <= 121
        settings.write_text('not a setting\n')
        result = platform.run('mfrun', 'tokens', check=False)
        assert result.returncode != 0
        assert 'not a NAME=value line' in result.stderr
    finally:
        settings.unlink()
        platform.run('mfkill', 'tokens')
        platform.run('mfrun', 'tokens')


def test_setup_fails_when_a_service_does_not_start(platform):
    """setup-all-in-one.sh said nothing and ended with 0 when mfrun could
    not start a service (its output was only logged)."""
    settings = platform.home / 'config' / 'tokens.env'
    settings.parent.mkdir(exist_ok=True)
    try:
        platform.run('mfkill', 'tokens')
        settings.write_text('not a setting\n')
        result = platform.run('install/setup-all-in-one.sh', check=False,
                              timeout=900)
        assert result.returncode != 0
        assert 'tokens did not start' in result.stderr
        assert 'MicroFlack is running' not in result.stdout
    finally:
        settings.unlink(missing_ok=True)
        platform.run('mfrun', 'tokens')


def test_malformed_registry_entries_are_skipped(platform):
    platform.etcd_put('/services/evil/location', '/x y"; bad')
    platform.etcd_put('/services/evil/upstream/e1', 'not an address')
    platform.etcd_put('/services/users/upstream/bad name', '127.0.0.1:1')
    platform.etcd_put('/services/users/upstream/weird', '127.0.0.1:99999')
    time.sleep(1)
    token = platform.user_with_token('after_bad_entries')
    assert token
    assert platform.http.get(f'{platform.lb}/api/users',
                             timeout=5).status_code == 200
    platform.etcd_delete('/services/evil', recursive=True)
    platform.etcd_delete('/services/users/upstream/bad name')
    platform.etcd_delete('/services/users/upstream/weird')


def test_logs_are_consolidated_and_served(platform):
    log = (platform.home / 'logs' / 'microflack.log').read_text()
    for service in SERVICES:
        assert f'\n{service}_v' in log or log.startswith(f'{service}_v')
    rv = platform.http.get(platform.logs, params={'follow': 0}, timeout=5)
    assert rv.status_code == 401
    auth = (platform.secret('LOGS_USER'), platform.secret('LOGS_PASSWORD'))
    rv = platform.http.get(platform.logs, auth=auth, timeout=5,
                           params={'follow': 0, 'lines': 5})
    assert rv.status_code == 200
    assert len(rv.text.splitlines()) == 5
    result = platform.run('mflogs', '-n', '3', 'bogus!', check=False)
    assert result.returncode == 2


def test_mfenv_and_mfdev(platform):
    env = platform.run('mfenv', 'users').stdout
    assert 'FLASK_APP=microflack_users.app' in env.splitlines()
    assert f'ETCD={platform.etcd}' in env
    assert f'LB={platform.lb}' in env
    prefix = platform.env['MF_DB_PREFIX']
    assert f'DATABASE_URL=mysql+pymysql://{prefix}users:' in env
    platform.run('mfdev', 'start', 'users', '5999')
    upstream = platform.registry('/services/users')
    assert upstream['upstream']['users_dev'] == '127.0.0.1:5999'
    assert upstream['weight']['users_dev'] == '256'
    platform.run('mfdev', 'stop', 'users')
    assert 'users_dev' not in platform.registry('/services/users')['upstream']


@pytest.mark.parametrize('args', [
    ('mfrun',), ('mfrun', 'nope'), ('mfrun', 'users', '9.9.9'),
    ('mfkill',), ('mfkill', 'nope'), ('mfkill', 'a', 'b'),
    ('mfbuild',), ('mfbuild', 'nope'), ('mfenv', 'nope'),
    ('mfdev',), ('mfdev', 'start'), ('mfdev', 'go', 'users'),
    ('mfdev', 'start', 'users', 'port'), ('mfdev', 'start', 'nope'),
    ('etcd-dump', 'relative'), ('mflogs', '-n'), ('mflogs', '-x'),
    ('mflb', 'dance'), ('install/setup-all-in-one.sh', 'extra'),
    ('install/make-db-passwords.sh', 'x'), ('install/setup-host.sh', '-x'),
])
def test_bad_arguments(platform, args):
    result = platform.run(*args, check=False)
    assert result.returncode != 0
    assert 'usage:' in result.stderr or 'error:' in result.stderr, \
        result.stderr


def test_etcd_dump(platform):
    out = platform.run('etcd-dump', '/services/users').stdout
    assert "/services/users/location = '/api/users'" in out
    # An instance's key is on its lease, shown with the seconds it has.
    assert re.search(r"/services/users/upstream/\S+ = '[^']+:\d+'   "
                     r"\(lease \d+, \d+ s left\)", out), out
    assert 'leases:' in out
    # The platform's etcd serves the v3 API only, as supported ones do.
    assert platform.http.get(f'{platform.etcd}/v2/keys/',
                             timeout=5).status_code == 404


def test_mfkill_all_clears_everything_and_setup_restores(platform):
    killed = platform.run('mfkill', 'all').stdout.split()
    assert len(killed) == len(SERVICES)
    assert platform.registry() == {}
    assert list((platform.home / 'run' / 'instances').glob('*.info')) == []
    # The platform is shared with later tests: setup brings it back.
    platform.run('install/setup-all-in-one.sh', timeout=900)
    for service in SERVICES:
        assert len(platform.instances(service)) == 1, service
