"""The Docker runtime, end to end: the local base image and the five
service images built from scratch, the whole platform with every service in
a container (host network, real etcd, HAProxy, MariaDB, Redis), and the
mf* scripts driving the containers.

Images, databases and containers carry test names (mftest_*, mfdock_*, the
platform's own MF_HOME label) beside any real installation on this host.
"""
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from mfplatform import (
    MixedLoad,
    Platform,
    api_flow,
    checkout_db_prefix,
    drop_test_databases,
    table_ids,
)
from test_seed import seed_and_check
from test_socketio_protocol import Client, message_push, new_user, unique
from upgrades import (
    bearer,
    older_release_ref,
    restore_one,
    roll_messages_under_load,
    roll_socketio_with_clients,
    roll_users_under_load,
    version,
)

SERVICES = ['ui', 'users', 'tokens', 'messages', 'socketio']
PREFIX = 'mftest_'
BASE_IMAGE = 'mftest_base:bookworm'
DB_PREFIX = checkout_db_prefix('mfdock')


def docker(*args, check=True):
    result = subprocess.run(['docker', *args], capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f'docker {args}: {result.stderr}')
    return result.stdout


def inspect(name):
    return json.loads(docker('inspect', name))[0]


def remove_test_images():
    for line in docker('image', 'ls', '--format',
                       '{{.Repository}}:{{.Tag}}').splitlines():
        if line.startswith(PREFIX):
            docker('image', 'rm', '--force', line, check=False)


@pytest.fixture(scope='module')
def platform(tmp_path_factory):
    """A platform installed by ``setup-all-in-one.sh --docker`` from images
    built in this run, on a base image built in this run."""
    remove_test_images()
    drop_test_databases(DB_PREFIX)
    platform = Platform(tmp_path_factory.mktemp('mfdocker'), {
        'MICROFLACK_RUNTIME': 'docker',
        'MF_DB_PREFIX': DB_PREFIX,
        'MF_IMAGE_PREFIX': PREFIX,
        'LOCAL_BASE_IMAGE': BASE_IMAGE,
        'BASE_IMAGE': BASE_IMAGE,
    })
    try:
        started = time.monotonic()
        platform.run('install/make-base-image.sh', '--force', timeout=600)
        platform.base_seconds = time.monotonic() - started
        started = time.monotonic()
        platform.setup_output = platform.run(
            'install/setup-all-in-one.sh', '--docker', timeout=900)
        platform.setup_seconds = time.monotonic() - started
        yield platform
    finally:
        platform.run('install/stop-all.sh', check=False)
        drop_test_databases(DB_PREFIX)
        remove_test_images()


def containers(platform, state='running'):
    """The names of this platform's containers (by its MF_HOME label)."""
    args = ['ps', '--format', '{{.Names}}', '--filter', 'label=app=microflack',
            '--filter', f'label=mf_home={platform.home}']
    if state == 'all':
        args.insert(1, '--all')
    return sorted(docker(*args).split())


def test_base_image_built_here(platform):
    base = inspect(BASE_IMAGE)
    # docker import: one layer, no parent, made by this run.
    assert len(base['RootFS']['Layers']) == 1
    assert base['Config']['Env'] and 'LANG=C.UTF-8' in base['Config']['Env']
    print(f'base image: {platform.base_seconds:.0f} s, '
          f"{base['Size'] / 1e6:.0f} MB")


@pytest.mark.parametrize('service', SERVICES)
def test_service_image(platform, service):
    image = inspect(f'{PREFIX}{service}:{version(service)}')
    assert inspect(f'{PREFIX}{service}:latest')['Id'] == image['Id']
    config = image['Config']
    assert config['User'] == '10001:10001'
    assert config['Labels']['app'] == 'microflack'
    assert config['Labels']['service'] == service
    assert config['Labels']['version'] == version(service)
    assert config['Healthcheck']['Test'][-3:] == [
        'python3', '-m', 'microflack_common.healthcheck']
    assert config['Cmd'] == ['./boot.sh']
    # Built on the base image of this run.
    base_layers = inspect(BASE_IMAGE)['RootFS']['Layers']
    assert image['RootFS']['Layers'][:len(base_layers)] == base_layers
    # .dockerignore kept the tests out; the wheels stayed in the build.
    listing = docker('run', '--rm', '--network', 'host', '--entrypoint',
                     'sh', image['Id'], '-c',
                     'ls /app; ls /tmp; id -u; test -w /app || echo ro')
    assert 'tests' not in listing.split()
    assert 'boot.sh' in listing.split()
    assert 'wheels' not in listing.split()
    assert '10001' in listing.split() and 'ro' in listing.split()
    # Issue 19, finding 10: no program that raises a process's privileges.
    # (As root, who may read every folder.)
    assert docker('run', '--rm', '--network', 'host', '--user', '0',
                  '--entrypoint', 'find', image['Id'], '/', '-xdev', '-type',
                  'f', '-perm', '/6000') == ''
    assert config['Labels']['org.microflack.secrets-file'] == '1'
    print(f"{service}: {image['Size'] / 1e6:.0f} MB")


def test_every_service_runs_in_a_container(platform):
    names = containers(platform)
    assert len(names) == len(SERVICES), names
    for name in names:
        container = inspect(name)
        labels = container['Config']['Labels']
        assert labels['app'] == 'microflack'
        assert name.startswith(labels['service'] + '_v')
        assert container['HostConfig']['NetworkMode'] == 'host'
        assert container['HostConfig']['RestartPolicy']['Name'] == 'always'
        assert container['Config']['StopSignal'] == 'SIGTERM'
        assert name in platform.instances(labels['service'])
        # The secrets went in through an env file, never a command line.
        assert not any('SECRET' in arg for arg in container['Args'])
        assert_hardened(container)
    platform.wait_for(
        lambda: all(inspect(n)['State']['Health']['Status'] == 'healthy'
                    for n in names),
        timeout=60, interval=1, what='every container healthy')


SECRET_SETTINGS = ('SECRET_KEY', 'JWT_SECRET_KEY', 'DATABASE_URL')


def assert_hardened(container):
    """Issue 19, finding 10: a read-only root (a tmpfs /tmp), no
    capabilities, no-new-privileges, memory and process limits, and no
    secret in what `docker inspect` shows: they come from a read-only
    file only the container's user reads."""
    host = container['HostConfig']
    assert host['ReadonlyRootfs'] is True
    assert list(host['Tmpfs']) == ['/tmp']
    assert host['CapDrop'] == ['ALL']
    assert 'no-new-privileges' in host['SecurityOpt']
    assert host['Memory'] == 512 * 2**20
    assert host['PidsLimit'] == 512
    names = {variable.split('=', 1)[0] for variable in container['Config']['Env']}
    assert not names & set(SECRET_SETTINGS), names
    [mount] = [m for m in container['Mounts']
               if m['Destination'] == '/run/secrets/microflack.env']
    assert mount['RW'] is False
    secrets = Path(mount['Source'])
    assert secrets.stat().st_uid == 10001
    assert secrets.stat().st_mode & 0o777 == 0o400
    found = {line.split('=', 1)[0] for line in secrets.read_text().splitlines()}
    assert {'SECRET_KEY', 'JWT_SECRET_KEY'} <= found


def test_containers_keep_to_what_they_need(platform):
    """Inside: the root is read-only, /tmp writable, no privilege to gain."""
    name = containers(platform)[0]
    out = docker('exec', name, 'sh', '-c',
                 'touch /app/x 2>/dev/null && echo app-writable; '
                 'touch /tmp/x && echo tmp-writable; '
                 'grep -E "^(CapEff|NoNewPrivs)" /proc/self/status')
    assert 'app-writable' not in out and 'tmp-writable' in out
    assert 'CapEff:\t0000000000000000' in out
    assert 'NoNewPrivs:\t1' in out


def test_api_flow_through_the_load_balancer(platform):
    api_flow(platform, unique('docker'))


def test_socketio_message_flow(platform):
    user, token = new_user(platform, 'dsio')
    marker = unique('msg')
    clients = [Client(platform.lb), Client(platform.lb)]
    try:
        clients[0].emit('post_message', {'source': f'hi *{marker}*'}, token)
        for client in clients:
            push = client.wait_for('updated_model',
                                   message_push(marker, f'hi <em>{marker}</em>'))
            assert push['model']['user_id'] == user['id']
    finally:
        for client in clients:
            client.close()


def test_mflogs_follows_the_containers(platform):
    """Each container's output reaches the consolidated log, prefixed by
    its instance id, and mflogs shows it."""
    users = next(n for n in containers(platform) if n.startswith('users_'))
    follower = subprocess.Popen(['mflogs', '-n', '500', 'users'],
                                env=platform.env, stdout=subprocess.PIPE,
                                text=True)
    seen = []
    reader = threading.Thread(
        target=lambda: seen.extend(iter(follower.stdout.readline, '')),
        daemon=True)
    reader.start()
    try:
        platform.wait_for(
            lambda: any(line.startswith(f'{users} | ') and 'registered' in line
                        for line in list(seen)),
            timeout=15, interval=0.1, what=f'a registration line of {users}')
        assert all(line.startswith('users_') for line in list(seen))
    finally:
        follower.kill()
        follower.wait(5)


def gunicorn_master_pid(name):
    """The host pid of the gunicorn master in a container (the child of
    the container's init)."""
    init = inspect(name)['State']['Pid']
    children = subprocess.run(['pgrep', '-P', str(init)], capture_output=True,
                              text=True).stdout.split()
    assert len(children) == 1, children
    return int(children[0])


def assert_restarted_and_registered(platform, name, restarts_before):
    """The container `name` was restarted by its policy, registered itself
    again (its registry key was deleted before) and serves through the load
    balancer."""
    platform.wait_for(
        lambda: inspect(name)['RestartCount'] > restarts_before, timeout=20,
        interval=0.2, what='restarted by its policy')
    service = inspect(name)['Config']['Labels']['service']
    platform.wait_for(lambda: name in platform.instances(service),
                      timeout=30, interval=0.2, what='registered again')
    # Registered is not yet routed: the load balancer's watcher reloads
    # and a health check passes first (a request meanwhile may find the
    # service with no usable instance).
    nickname = unique('restart')
    platform.wait_for(
        lambda: platform.http.post(
            f'{platform.lb}/api/users', timeout=10,
            json={'nickname': nickname, 'password': 'secret'}
        ).status_code == 201,
        timeout=15, interval=0.2, what='a user registered')
    tokens = []

    def log_in():
        rv = platform.http.post(f'{platform.lb}/api/tokens', timeout=5,
                                auth=(nickname, 'secret'))
        if rv.status_code == 200:
            tokens.append(rv.json()['token'])
        return bool(tokens)
    platform.wait_for(log_in, timeout=15, interval=0.2, what='logged in')
    platform.wait_for(
        lambda: platform.http.get(
            f'{platform.lb}/api/tokens', timeout=5,
            headers={'Authorization': f'Bearer {tokens[0]}'}
        ).status_code == 200,
        timeout=15, interval=0.2, what='served again')
    assert inspect(name)['State']['Status'] == 'running'


def test_a_crashed_container_is_restarted_and_registers_again(platform):
    """Its process killed with SIGKILL (a crash, the OOM killer): Docker's
    restart policy starts the container again, which registers itself and
    serves through the load balancer."""
    name = next(n for n in containers(platform) if n.startswith('tokens_'))
    before = inspect(name)['RestartCount']
    platform.etcd_delete(f'/services/tokens/upstream/{name}')
    os.kill(gunicorn_master_pid(name), signal.SIGKILL)
    assert_restarted_and_registered(platform, name, before)


def test_a_container_killed_with_docker_kill_is_restarted(platform):
    """`docker kill` with a signal that is not the image's stop signal
    (gunicorn's SIGQUIT: quick shutdown) is no operator's stop for Docker:
    the policy restarts the container, which runs its migrations again,
    registers itself and serves. (Docker never restarts after a kill with
    the stop signal or SIGKILL: that is a stop, as mfkill's.)"""
    name = next(n for n in containers(platform) if n.startswith('users_'))
    before = inspect(name)['RestartCount']
    platform.etcd_delete(f'/services/users/upstream/{name}')
    docker('kill', '--signal', 'SIGQUIT', name)
    assert_restarted_and_registered(platform, name, before)


def test_mfrun_and_mfkill_one_container(platform):
    instance = platform.run('mfrun', 'tokens').stdout.strip()
    assert instance in containers(platform)
    assert instance in platform.instances('tokens')
    assert platform.run('mfkill', instance).stdout.split() == [instance]
    assert instance not in containers(platform, 'all')
    assert instance not in platform.instances('tokens')


def test_mfclean_removes_an_unused_image(platform):
    image = f'{PREFIX}tokens'
    current = version('tokens')
    docker('tag', f'{image}:{current}', f'{image}:0.0.1')
    result = platform.run('mfclean', '--keep', '1', 'tokens')
    assert result.stdout == 'removed tokens 0.0.1\n'
    tags = docker('image', 'ls', '--format', '{{.Tag}}', image).split()
    assert current in tags and '0.0.1' not in tags


def test_mfenv_matches_the_native_runtime(platform):
    env = platform.run('mfenv', 'users').stdout
    assert f"LB={platform.lb}" in env.splitlines()
    assert any(line.startswith('DATABASE_URL=mysql+pymysql://')
               for line in env.splitlines())


def test_mfseed_runs_the_seed_commands_in_containers(platform):
    seed_and_check(platform, user_count=20, message_count=100)


def test_roll_messages_under_load(platform):
    """mfupgrade in the Docker runtime: the previous release's image (built
    from git) replaced by the current one under load, with no failure."""
    ref, old_tag = older_release_ref('messages')
    platform.run('mfbuild', '--from', ref, 'messages')
    try:
        roll_messages_under_load(platform, old_tag, version('messages'))
    finally:
        # One instance of the newest build again, even after a failure: the
        # tests after this one need the service.
        restore_one(platform, 'messages')


def test_roll_users_under_load(platform):
    tag = f"{version('users')}.1"
    platform.run('mfbuild', '--tag', tag, 'users')
    try:
        roll_users_under_load(platform, tag)
    finally:
        restore_one(platform, 'users')


def test_roll_socketio_reconnects_every_client(platform):
    tag = f"{version('socketio')}.1"
    platform.run('mfbuild', '--tag', tag, 'socketio')
    try:
        roll_socketio_with_clients(platform, tag)
    finally:
        restore_one(platform, 'socketio')


def saved_runtime(platform):
    conf = (platform.home / 'microflack.conf').read_text()
    return [line for line in conf.splitlines()
            if line.startswith('MICROFLACK_RUNTIME=')]


def switch_under_load(platform, runtime, token):
    """``setup-all-in-one.sh --<runtime>`` while two clients read from every
    service and post messages through the load balancer: no request fails,
    and each service keeps its number of instances."""
    lb = platform.lb
    counts = {service: len(platform.instances(service))
              for service in SERVICES}
    paths = itertools.cycle(['/', '/api/users', '/api/messages', '/api/tokens',
                             '/socket.io/?EIO=4&transport=polling'])
    load = MixedLoad(
        get=lambda s: s.get(f'{lb}{next(paths)}', headers=bearer(token),
                            timeout=15),
        post=lambda s: s.post(f'{lb}/api/messages', headers=bearer(token),
                              json={'source': f'switch to *{runtime}*'},
                              timeout=15),
        clients=2, post_every=4, pause=0.02)
    started = time.monotonic()
    with load:
        time.sleep(1)
        result = platform.run('install/setup-all-in-one.sh', f'--{runtime}',
                              check=False, timeout=900)
        time.sleep(1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load.failures == [], load.failures[:5]
    assert load.requests > 50, load.requests
    database = f"{platform.env['MF_DB_PREFIX']}messages"
    assert set(load.created) <= table_ids(database, 'messages')
    # Every service routed, to instances of the new runtime only.
    stats = platform.stats()
    records = platform.home / 'run' / 'instances'
    for service in SERVICES:
        names = platform.instances(service)
        assert len(names) == counts[service], (service, names)
        for name in names:
            info = (records / f'{name}.info').read_text().splitlines()
            assert f'RUNTIME={runtime}' in info, (name, info)
            assert stats[(f'{service}_backend', name)]['status'] == 'UP'
        servers = [server for backend, server in stats
                   if backend == f'{service}_backend'
                   and server not in ('FRONTEND', 'BACKEND')]
        assert sorted(servers) == names, (service, servers)
    assert sorted(p.stem for p in records.glob('*.info')) == sorted(
        name for service in SERVICES for name in platform.instances(service))
    # The new runtime is saved only now (the environment's is the test's).
    assert saved_runtime(platform) == [
        f'MICROFLACK_RUNTIME=${{MICROFLACK_RUNTIME:-{runtime}}}']
    print(f'switch to {runtime}: {time.monotonic() - started:.0f} s, '
          f'{load.requests} requests, 0 failed')


def test_switch_runtimes_under_load(platform):
    """The documented switch, both ways, on this Docker platform:
    ``setup-all-in-one.sh --native`` builds the releases beside the images
    and replaces every container with a process (each routed before its
    container leaves), then ``--docker`` switches back the same way."""
    token = platform.user_with_token(unique('switch'))
    releases = platform.home / 'releases'
    # Not beside a pending upgrade: refused before anything changes.
    state = platform.home / 'run' / 'upgrade.state'
    state.write_text('SERVICE=users\nTAG=0.0.1\n')
    try:
        refused = platform.run('install/setup-all-in-one.sh', '--native',
                               check=False)
    finally:
        state.unlink()
    assert refused.returncode == 1
    assert 'mfupgrade abort' in refused.stderr
    assert 'nothing was changed' in refused.stderr
    assert saved_runtime(platform) == [
        'MICROFLACK_RUNTIME=${MICROFLACK_RUNTIME:-docker}']
    assert not releases.exists()
    switch_under_load(platform, 'native', token)
    assert containers(platform, 'all') == []
    switch_under_load(platform, 'docker', token)
    assert len(containers(platform)) >= len(SERVICES)
    # No process of a release is left.
    leftover = subprocess.run(['pgrep', '-f', str(releases)],
                              capture_output=True, text=True).stdout.split()
    assert leftover == []


def test_mfkill_all_leaves_no_container_and_no_registry_entry(platform):
    running = containers(platform)
    assert len(running) >= len(SERVICES)
    killed = platform.run('mfkill', 'all').stdout.split()
    assert sorted(killed) == running
    assert containers(platform, 'all') == []
    assert platform.registry() == {}
    assert list((platform.home / 'run' / 'instances').glob('*.info')) == []
