"""Rolling upgrades under load, for the native and the Docker platform
tests: builds of an older release (from git) or a newer tag, several
instances, a steady mixed load through the load balancer during
``mfupgrade roll``, and what must hold afterwards."""
import subprocess
import time
import uuid

import lb_log
import requests
import socketio
from mfplatform import ROOT, MixedLoad, table_ids


def version(service):
    return (ROOT / f'microflack_{service}' / 'VERSION').read_text().strip()


def git(*args):
    return subprocess.run(['git', '-C', str(ROOT), *args], capture_output=True,
                          text=True, check=True).stdout.strip()


def older_release_ref(service, release=None):
    """(commit, version) of an older release in the history: the newest
    commit whose VERSION of the service differs from the working tree's
    (the release before the current one), or is ``release``."""
    current = version(service)
    for commit in git('rev-list', '--max-count=300', 'HEAD').split():
        shown = subprocess.run(
            ['git', '-C', str(ROOT), 'show',
             f'{commit}:microflack_{service}/VERSION'],
            capture_output=True, text=True)
        found = shown.stdout.strip()
        if shown.returncode == 0 and found != current \
                and release in (None, found):
            return commit, found
    raise AssertionError(f'no older release {release or ""} of {service} '
                         'in the history')


def live(platform, service):
    """{instance: tag} of the service's registered instances."""
    return {name: name.split('_v', 1)[1].rsplit('_', 2)[0]
            for name in platform.instances(service)}


def run_instances(platform, service, tag, count):
    """Exactly ``count`` instances of the service, all of build ``tag``."""
    platform.run('mfkill', service)
    started = [platform.run('mfrun', service, tag).stdout.strip()
               for _ in range(count)]
    assert sorted(started) == sorted(platform.instances(service))
    return started


def restore_one(platform, service):
    """Back to one instance of the newest build, for the tests after."""
    platform.run('mfkill', service)
    platform.run('mfrun', service)


def roll(platform, service):
    started = time.monotonic()
    result = platform.run('mfupgrade', 'roll', service, timeout=600)
    return result, time.monotonic() - started


def assert_rolled(platform, service, tag, count):
    instances = live(platform, service)
    assert sorted(instances.values()) == [tag] * count, instances
    # Nothing left behind: the registry names the new instances only, and
    # no upgrade is pending.
    records = sorted(p.stem for p in (platform.home / 'run' / 'instances')
                     .glob(f'{service}_*.info'))
    assert records == sorted(instances)
    assert not (platform.home / 'run' / 'upgrade.state').exists()


def roll_under(platform, service, load):
    """``mfupgrade roll service`` while ``load`` runs (from a second before
    to a second after): no request of the load may fail. The roll's
    duration in seconds."""
    log = platform.home / 'logs' / 'lb.log'
    offset = lb_log.size(log)
    with load:
        time.sleep(1)
        _, seconds = roll(platform, service)
        time.sleep(1)
    # What the load balancer logged of the failures (and why) meanwhile.
    assert load.failures == [], (load.failures[:5],
                                 lb_log.failed_requests(log, offset))
    assert load.requests > 100, load.requests
    return seconds


def bearer(token):
    return {'Authorization': f'Bearer {token}'}


def warm_up_renderers(platform, token, posts_per_instance=40):
    """Messages builds before 1.2.2 shared one markdown parser between a
    worker's threads, and threads rendering a worker's first messages at
    once could get a 500: every worker of the old build renders one
    message alone first (a new connection a POST, so every worker
    takes some)."""
    for address in platform.registry('/services/messages/upstream').values():
        for _ in range(posts_per_instance):
            with requests.Session() as fresh:
                fresh.trust_env = False
                rv = fresh.post(f'http://{address}/api/messages',
                                headers=bearer(token), timeout=10,
                                json={'source': 'warm *up*'})
            assert rv.status_code == 201, rv.text


def roll_messages_under_load(platform, old_tag, new_tag):
    """3 instances of ``old_tag``, 8 clients posting and reading messages
    through the load balancer, ``mfupgrade roll messages``: no request
    fails and every message that got a 201 is stored."""
    run_instances(platform, 'messages', old_tag, 3)
    token = platform.user_with_token(f'load_{uuid.uuid4().hex[:8]}')
    warm_up_renderers(platform, token)
    lb = platform.lb
    load = MixedLoad(
        get=lambda s: s.get(f'{lb}/api/messages', headers=bearer(token),
                            timeout=15),
        post=lambda s: s.post(f'{lb}/api/messages', headers=bearer(token),
                              json={'source': 'under *load*'}, timeout=15))
    seconds = roll_under(platform, 'messages', load)
    assert load.created
    database = f"{platform.env['MF_DB_PREFIX']}messages"
    assert set(load.created) <= table_ids(database, 'messages')
    assert_rolled(platform, 'messages', new_tag, 3)
    print(f'messages roll {old_tag} -> {new_tag}: {seconds:.1f} s, '
          f'{load.requests} requests, {len(load.created)} posted, 0 failed')
    return load


def roll_users_under_load(platform, new_tag):
    """The same for users: reading the list and registering new users."""
    run_instances(platform, 'users', version('users'), 3)
    token = platform.user_with_token(f'load_{uuid.uuid4().hex[:8]}')
    lb = platform.lb
    load = MixedLoad(
        get=lambda s: s.get(f'{lb}/api/users', headers=bearer(token),
                            timeout=15),
        post=lambda s: s.post(
            f'{lb}/api/users', timeout=15,
            json={'nickname': f'u{uuid.uuid4().hex[:12]}', 'password': 'pw'}))
    seconds = roll_under(platform, 'users', load)
    database = f"{platform.env['MF_DB_PREFIX']}users"
    assert set(load.created) <= table_ids(database, 'users')
    assert_rolled(platform, 'users', new_tag, 3)
    print(f'users roll -> {new_tag}: {seconds:.1f} s, {load.requests} '
          f'requests, 0 failed')


def roll_socketio_with_clients(platform, new_tag, clients=6):
    """Socket.IO clients connected through the load balancer while every
    socketio instance is replaced: all of them are connected again
    afterwards and receive the push of a message posted then."""
    run_instances(platform, 'socketio', version('socketio'), 2)
    connected = []
    received = {}
    for number in range(clients):
        client = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                 reconnection_delay_max=1)

        def on_push(data, number=number):
            if data.get('class') == 'Message':
                received.setdefault(number, []).append(data['model']['source'])
        client.on('updated_model', on_push)
        client.connect(platform.lb, transports=['websocket'],
                       socketio_path='/socket.io', wait_timeout=10)
        connected.append(client)
    before = [client.get_sid() for client in connected]
    try:
        result, seconds = roll(platform, 'socketio')
        assert_rolled(platform, 'socketio', new_tag, 2)
        platform.wait_for(
            lambda: all(c.connected and c.get_sid() != sid
                        for c, sid in zip(connected, before, strict=True)),
            timeout=20, interval=0.2, what='every client reconnected')
        token = platform.user_with_token(f'sio_{uuid.uuid4().hex[:8]}')
        marker = f'after the roll {uuid.uuid4().hex[:8]}'
        rv = platform.http.post(f'{platform.lb}/api/messages', timeout=10,
                                headers=bearer(token), json={'source': marker})
        assert rv.status_code == 201, rv.text
        platform.wait_for(
            lambda: all(marker in received.get(n, [])
                        for n in range(clients)),
            timeout=10, interval=0.1, what='the push reached every client')
    finally:
        for client in connected:
            client.disconnect()
    print(f'socketio roll -> {new_tag}: {seconds:.1f} s, {clients} clients '
          'reconnected and pushed to')
