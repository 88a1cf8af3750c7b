"""mfcluster (issue 18): several hosts on this machine, each a network
namespace on one bridge: the registry's 3 etcd members on hosts h1-h3, the
load balancers on h4 and h5 (mflb's HAProxy and watcher, keepalived moving
the floating address), the store on h6, the workers h7 and h8 running every
service. One cluster for the whole module, under a name and a subnet of its
own (so that it coexists with any other), removed by ``mfcluster down``
even when a test fails.

Every request goes to the cluster's own subnet, which exists only on its
bridge. Each scenario of the issue writes what it measured to
$MF_TEST_ARTIFACTS/cluster-*.json; the scenarios under load are those of
tools/cluster_scenarios.py, which mfbench-cluster runs too.
"""
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

import pytest
import urllib3
from cluster_scenarios import (
    LB_HOSTS,
    SERVICES,
    Chat,
    Cluster,
    Listener,
    Outcome,
    Traffic,
    fetch,
    free_subnet,
    lb_dies,
    mfcluster,
    parse_up,
    process_line,
    wait_for,
    worker_cut_off,
    worker_dies,
)
from mfplatform import ROOT, clean_environ

from microflack_common.etcd_client import EtcdClient, EtcdError
from microflack_common.registration import Registration
from microflack_common.revocation import RevocationList

ADMIN = Path(__file__).resolve().parent.parent
MFCLUSTER = str(ADMIN / 'bin' / 'mfcluster')
MFUPGRADE = str(ADMIN / 'bin' / 'mfupgrade')
ARTIFACTS = Path(os.environ.get('MF_TEST_ARTIFACTS')
                 or ROOT / '.test-home' / 'artifacts')
HOSTS = 8
ROLES = ['registry'] * 3 + ['lb'] * 2 + ['store'] + ['worker'] * 2
WORKERS = (7, 8)
# The targets (2 s for scenario 2, 3 s for scenario 3) are figures
# to measure, written to the artifacts and reported in the README, not
# timed assertions: on a busy CI machine an election can take a client
# timeout longer. The tests check that things carry on, within these.
# Scenario 2: registrations, revocations and watches carry on within this.
CARRY_ON_SECONDS = 6.0
# Scenario 3: the floating address answers again within this.
FAILOVER_SECONDS = 8.0
# Processes of a load balancer: supervisord, HAProxy's master and worker,
# the watcher, the watchdog, keepalived and its VRRP child.
LB_PROCESSES = 7

http = urllib3.PoolManager(retries=False)


def member_status(url):
    rv = http.request('POST', f'{url}/v3/maintenance/status', body=b'{}',
                      timeout=2)
    assert rv.status == 200, rv.data
    return json.loads(rv.data)


def healthy(url):
    try:
        rv = http.request('GET', f'{url}/health', timeout=2)
    except urllib3.exceptions.HTTPError:
        return False
    return rv.status == 200 and json.loads(rv.data).get('health') == 'true'


def serializable_value(url, key):
    """A key as one member has it (its local copy, no leader asked)."""
    body = json.dumps({'key': b64(key), 'serializable': True}).encode()
    rv = http.request('POST', f'{url}/v3/kv/range', body=body, timeout=2)
    kvs = json.loads(rv.data).get('kvs') or []
    return unb64(kvs[0]['value']) if kvs else None


def b64(text):
    return base64.b64encode(text.encode()).decode()


def unb64(text):
    return base64.b64decode(text).decode()


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail('mfcluster needs root (network namespaces)')
    env = clean_environ()
    if os.environ.get('MF_TEST_WHEELHOUSE'):
        # The test command's wheelhouse (the load balancers' tools, the
        # workers' builds).
        env['WHEELHOUSE'] = os.environ['MF_TEST_WHEELHOUSE']
    cluster = Cluster(tmp_path_factory.mktemp('cluster-home'),
                      't' + secrets.token_hex(3), free_subnet(), env)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


# -- the hosts ----------------------------------------------------------


def test_up_makes_hosts_that_reach_each_other(cluster, tmp_path):
    printed = cluster.printed
    assert printed['hosts'] == [
        [f'h{k}', cluster.address(k), ROLES[k - 1], cluster.namespace(k)]
        for k in range(1, HOSTS + 1)]
    assert cluster.etcd_urls == [f'http://{cluster.address(k)}:2379'
                                 for k in (1, 2, 3)]
    assert printed['ETCD_TIMEOUT'] == '1'
    assert printed['URL'] == f'http://{cluster.vip}/'
    assert cluster.namespaces() == sorted(cluster.namespace(k)
                                          for k in range(1, HOSTS + 1))
    for k in range(1, HOSTS + 1):
        shown = cluster.run('exec', f'h{k}', 'ip', '-o', '-4', 'addr',
                            'show', 'dev', 'eth0').stdout
        assert f' {cluster.address(k)}/24 ' in shown
    # An HTTP server on the worker, answered from every other host (as
    # root, over the bridge) and from the root namespace (the bridge's .1).
    (tmp_path / 'marker').write_text('on the worker\n')
    worker = cluster.address(HOSTS)
    server = subprocess.Popen(
        [MFCLUSTER, 'exec', '--name', cluster.name, f'h{HOSTS}',
         sys.executable, '-m', 'http.server', '--bind', worker,
         '--directory', str(tmp_path), '8000'],
        env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f'http://{worker}:8000/marker'

        def answers():
            try:
                return http.request('GET', url, timeout=1).status == 200
            except urllib3.exceptions.HTTPError:
                return False
        assert wait_for(answers, 10)
        for k in range(1, HOSTS):
            got = cluster.run('exec', f'h{k}', 'curl', '-sSf', '--noproxy',
                              '*', '--max-time', '5', url).stdout
            assert got == 'on the worker\n', f'h{k}'
    finally:
        server.terminate()
        server.wait(10)


def test_a_second_up_changes_nothing(cluster):
    before = ([cluster.pids(k) for k in range(1, HOSTS + 1)],
              cluster.namespaces(), cluster.links())
    assert parse_up(cluster.run('up').stdout) == cluster.printed
    after = ([cluster.pids(k) for k in range(1, HOSTS + 1)],
             cluster.namespaces(), cluster.links())
    assert after == before
    # etcd; the load balancers; mariadbd and redis-server; on a worker the
    # supervisor, the log server and each instance's gunicorn master and
    # workers.
    assert [len(pids) for pids in after[0][:6]] == \
        [1, 1, 1, LB_PROCESSES, LB_PROCESSES, 2]
    assert all(len(pids) >= 2 + 2 * len(SERVICES) for pids in after[0][6:])
    # h4 took the floating address first.
    assert cluster.vip_holders() == [4]


# -- the registry -------------------------------------------------------


def test_the_registry_is_one_cluster_of_three(cluster):
    members = None
    for url in cluster.etcd_urls:
        rv = http.request('POST', f'{url}/v3/cluster/member/list',
                          body=b'{}', timeout=2)
        listed = sorted((m['name'], m['clientURLs'][0])
                        for m in json.loads(rv.data)['members'])
        assert members in (None, listed)
        members = listed
    assert members == [(f'h{k}', url) for k, url
                       in enumerate(cluster.etcd_urls, start=1)]
    statuses = [member_status(url) for url in cluster.etcd_urls]
    assert len({status['header']['cluster_id'] for status in statuses}) == 1
    assert len({status['leader'] for status in statuses}) == 1
    assert len(cluster.leaders()) == 1
    assert all(healthy(url) for url in cluster.etcd_urls)
    # v3 only: the v2 API is not there.
    for url in cluster.etcd_urls:
        assert http.request('GET', f'{url}/v2/keys/', timeout=2).status == 404
    shown = cluster.run('status').stdout
    assert shown.count(': healthy, ') == 3
    assert shown.count(', leader, ') == 1
    assert 'registry' in shown and 'worker' in shown


def test_the_leaders_host_dies(cluster):
    """Scenario 2 of issue 18: registrations, revocations and watches carry
    on within 2 s; nothing is taken out; the member rejoins."""
    urls = cluster.etcd_urls
    timeout = float(cluster.printed['ETCD_TIMEOUT'])
    client = EtcdClient(urls, timeout=timeout)
    # Another service: its own client, and a mirror that follows etcd.
    other = EtcdClient(urls, timeout=timeout)
    registration = Registration(
        client, 'users', 'users_v1_h7_5000', f'{cluster.address(7)}:5000',
        '/api/users', ttl=10, refresh=1).start()
    revocations = RevocationList(client, mirror=True)
    followers = RevocationList(other, mirror=True)
    watcher = EtcdClient(urls, timeout=timeout)
    absent = []
    stop = threading.Event()

    def sample_registration():
        reader = EtcdClient(urls, timeout=timeout)
        while not stop.wait(0.1):
            try:
                if reader.get(registration.upstream_key) is None:
                    absent.append(time.monotonic())
            except EtcdError:
                pass        # not an answer; only "no key" would count
    sampler = threading.Thread(target=sample_registration, daemon=True)
    try:
        assert wait_for(lambda: client.get(registration.upstream_key), 10)
        lease = registration.lease
        assert revocations.mirror.wait_synced(5)
        assert followers.mirror.wait_synced(5)
        revocations.revoke('before-the-kill', time.time() + 60)
        assert wait_for(lambda: followers.mirror.lookup('before-the-kill'), 5)
        client.put('/scenario/written', 'before')
        start_revision = client.revision() + 1
        sampler.start()
        [leader] = cluster.leaders()
        killed_url = urls[leader - 1]

        killed = time.monotonic()
        cluster.run('kill-host', f'h{leader}')
        assert cluster.pids(leader) == []
        seen = {}
        watched = {}

        def watch():
            try:
                watched['events'] = watcher.watch_prefix(
                    '/scenario/', start_revision, timeout=10)
                watched['at'] = time.monotonic()
            except EtcdError as exc:
                watched['error'] = exc
        watch_thread = threading.Thread(target=watch, daemon=True)
        watch_thread.start()
        # A new revocation, tried until it succeeds.
        attempts = []
        while True:
            try:
                revocations.revoke('after-the-kill', time.time() + 60)
                break
            except EtcdError as exc:
                attempts.append(str(exc))
                assert time.monotonic() - killed < 10, attempts
        seen['revocation'] = time.monotonic() - killed
        assert wait_for(lambda: followers.mirror.lookup('after-the-kill'), 5,
                        interval=0.01)
        seen['revocation seen by a mirror'] = time.monotonic() - killed
        written = f'while h{leader} was down'
        client.put('/scenario/written', written)
        assert client.get_value('/scenario/written') == written
        seen['put and get'] = time.monotonic() - killed
        watch_thread.join(10)
        assert 'events' in watched, watched
        assert [event.kv.key for event in watched['events']] == \
            ['/scenario/written']
        seen['watch started after the kill'] = watched['at'] - killed
        # The registration was kept alive through it all: never re-made,
        # its key never missing.
        time.sleep(2.5)
        seen['keep-alives after the kill'] = time.monotonic() - killed
        kv = client.get(registration.upstream_key)
        assert kv is not None and kv.lease == lease == registration.lease
        assert client.time_to_live(lease) > 5
        assert absent == []
        report = {name: round(seconds, 3) for name, seconds in seen.items()}
        report.update(killed_host=f'h{leader}', failed_revocations=attempts,
                      client_timeout=timeout)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / 'cluster-leader-dies.json').write_text(
            json.dumps(report, indent=2) + '\n')
        print('\nthe etcd leader\'s host dies:', json.dumps(report))
        for name in ('revocation', 'revocation seen by a mirror',
                     'put and get', 'watch started after the kill'):
            assert seen[name] <= CARRY_ON_SECONDS, (name, report)
        # The host comes back: its member rejoins and catches up.
        cluster.run('revive-host', f'h{leader}')
        assert wait_for(lambda: serializable_value(
            killed_url, '/scenario/written') == written, 10)
        assert all(healthy(url) for url in urls)
        assert len(cluster.leaders()) == 1
        shown = cluster.run('status').stdout
        assert shown.count(': healthy, ') == 3
    finally:
        stop.set()
        registration.stop()
        revocations.mirror.stop()
        followers.mirror.stop()


# -- the load balancers -------------------------------------------------


class Backend:
    """A tiny HTTP server on the worker h7 (python's http.server, in h7's
    namespace), serving ``/<location>/marker`` and ``/health``, registered
    in the cluster's registry as the one instance of a service."""

    def __init__(self, cluster, folder, name, port):
        self.cluster, self.name, self.port = cluster, name, port
        self.location = f'/{name}'
        self.body = f'{name} on h7:{port}\n'
        (folder / name).mkdir(parents=True)
        (folder / name / 'marker').write_text(self.body)
        # HAProxy's health check of an instance.
        (folder / 'health').write_text('ok\n')
        self.address = f'{cluster.address(7)}:{port}'
        self.server = subprocess.Popen(
            [MFCLUSTER, 'exec', '--name', cluster.name, 'h7',
             sys.executable, '-m', 'http.server', '--bind',
             cluster.address(7), '--directory', str(folder), str(port)],
            env=cluster.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.client = EtcdClient(cluster.etcd_urls, timeout=1)
        self.registration = None

    def register(self):
        assert wait_for(lambda: self.answers(self.address), 10)
        self.registration = Registration(
            self.client, self.name, f'{self.name}_v1_h7_{self.port}',
            self.address, self.location, ttl=10, refresh=1).start()
        return self

    def answers(self, address):
        host, _, port = address.partition(':')
        conn = HTTPConnection(host, int(port or 80), timeout=1)
        try:
            conn.request('GET', f'{self.location}/marker')
            response = conn.getresponse()
            return response.status == 200 and \
                response.read().decode() == self.body
        except OSError:
            return False
        finally:
            conn.close()

    def routed_by(self, address, timeout=1.0):
        return fetch(address, f'{self.location}/marker', timeout) == \
            (200, self.body)

    def stop(self):
        if self.registration:
            self.registration.stop()
        self.server.terminate()
        self.server.wait(10)


@pytest.fixture(scope='module')
def hello(cluster, tmp_path_factory):
    backend = Backend(cluster, tmp_path_factory.mktemp('hello'), 'hello',
                      8000)
    try:
        yield backend.register()
    finally:
        backend.stop()


def lb_lines(cluster):
    shown = cluster.run('status', check=False).stdout
    return {line.split()[0]: line for line in shown.splitlines()
            if line.split()[2:3] == ['lb']}, shown


def test_the_floating_address_routes_to_a_worker(cluster, hello, tmp_path):
    """The chat's URL (the floating address) reaches an instance on a
    worker through the load balancer that holds it; both load balancers'
    watchers follow the registry."""
    assert cluster.vip_holders() == [4]
    assert wait_for(lambda: hello.routed_by(cluster.vip), 10)
    for k in LB_HOSTS:
        assert wait_for(lambda k=k: hello.routed_by(cluster.address(k)), 10)
    lines, shown = lb_lines(cluster)
    assert f'URL=http://{cluster.vip}/ (the floating address, on h4)' \
        in shown
    assert f'keepalived: MASTER, holds {cluster.vip}' in lines['h4']
    assert 'keepalived: backup' in lines['h5']
    for k in LB_HOSTS:
        assert 'haproxy up watcher up watchdog up' in lines[f'h{k}']
    # A service registered now is routed by both.
    other = Backend(cluster, tmp_path, 'later', 8001)
    try:
        other.register()
        for address in (cluster.vip, *map(cluster.address, LB_HOSTS)):
            assert wait_for(lambda a=address: other.routed_by(a), 10), \
                address
    finally:
        other.stop()


def test_the_active_load_balancers_host_dies(cluster, hello):
    """Scenario 3 of issue 18: the floating address moves within 3 s, new
    requests succeed; the host comes back as the backup (nopreempt: the
    address stays where it is)."""
    assert cluster.vip_holders() == [4]
    assert hello.routed_by(cluster.vip)
    killed = time.monotonic()
    cluster.run('kill-host', 'h4')
    kill_returned = time.monotonic() - killed
    assert cluster.pids(4) == []
    # Short attempts, each on a new connection: a SYN lost to the dead
    # host would otherwise be sent again only after a second.
    failed = 0
    while not hello.routed_by(cluster.vip, timeout=0.25):
        failed += 1
        assert time.monotonic() - killed < 10, 'the address did not move'
        time.sleep(0.02)
    answered = time.monotonic() - killed
    assert cluster.vip_holders() == [5]
    report = {'answered again': round(answered, 3),
              'kill-host returned': round(kill_returned, 3),
              'failed requests meanwhile': failed,
              'new holder': 'h5'}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / 'cluster-lb-dies.json').write_text(
        json.dumps(report, indent=2) + '\n')
    print('\nthe active load balancer\'s host dies:', json.dumps(report))
    assert answered <= FAILOVER_SECONDS, report
    # New requests succeed, each on a connection of its own.
    assert all(hello.routed_by(cluster.vip) for _ in range(20))
    lines, _ = lb_lines(cluster)
    assert 'keepalived: not running' in lines['h4']
    assert f'keepalived: MASTER, holds {cluster.vip}' in lines['h5']

    # The host comes back: its load balancer runs again, as the backup,
    # and routes what the registry says; the address does not move back.
    cluster.run('revive-host', 'h4')
    assert wait_for(lambda: len(cluster.pids(4)) == LB_PROCESSES, 5), \
        cluster.pids(4)
    assert wait_for(lambda: hello.routed_by(cluster.address(4)), 10)
    holders = set()
    failures = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        holders.add(tuple(cluster.vip_holders()))
        failures += not hello.routed_by(cluster.vip)
        time.sleep(0.05)
    assert holders == {(5,)}
    assert failures == 0
    lines, shown = lb_lines(cluster)
    assert 'keepalived: backup' in lines['h4']
    assert 'haproxy up watcher up watchdog up' in lines['h4']
    assert cluster.run('status', check=False).returncode == 0, shown


def test_a_dead_haproxy_moves_the_address_and_up_starts_it(cluster, hello):
    """A load balancer whose HAProxy stops answering (here: mflb stop on
    the holder, h5 after scenario 3) gives the address up, keepalived's
    check failing; ``up`` starts it again, and a dead keepalived, and the
    address stays where it went."""
    assert cluster.vip_holders() == [5]
    host_home = cluster.home / 'cluster' / cluster.name / 'h5'
    stopped = time.monotonic()
    cluster.run('exec', 'h5', 'env', f'MF_HOME={host_home}',
                str(ADMIN / 'bin' / 'mflb'), 'stop')
    assert wait_for(lambda: cluster.vip_holders() == [4], 10)
    moved = time.monotonic() - stopped
    assert wait_for(lambda: hello.routed_by(cluster.vip, timeout=0.25), 5)
    print(f'\nHAProxy stopped on the holder: the address moved in '
          f'{moved:.2f} s')
    assert moved <= 5
    # h4's keepalived dies too; up starts what is missing, nothing else.
    keepalived = [pid for pid in cluster.pids(4)
                  if process_line(pid) and process_line(pid)[0] == 'keepalived']
    assert len(keepalived) == 2
    registry = [cluster.pids(k) for k in (1, 2, 3)]
    h4_others = sorted(set(cluster.pids(4)) - set(keepalived))
    subprocess.run(['kill', '-KILL', *keepalived], check=True)
    # Its address stays on its eth0 (killed, it could not take it off).
    cluster.run('up')
    assert [cluster.pids(k) for k in (1, 2, 3)] == registry
    assert wait_for(lambda: len(cluster.pids(4)) == LB_PROCESSES, 5)
    assert set(h4_others) < set(cluster.pids(4))
    assert wait_for(lambda: len(cluster.pids(5)) == LB_PROCESSES, 5)
    assert wait_for(lambda: hello.routed_by(cluster.address(5)), 10)
    time.sleep(2)
    assert cluster.vip_holders() == [4]
    assert all(hello.routed_by(cluster.vip) for _ in range(10))
    assert cluster.run('status', check=False).returncode == 0


# -- the workers: the chat on several hosts -----------------------------


@pytest.fixture(scope='module')
def chat(cluster):
    assert wait_for(lambda: (fetch(cluster.vip, '/api/messages') or
                             (0,))[0] == 200, 30)
    return Chat(cluster)


def report(name, outcome):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f'{name}.json').write_text(
        json.dumps(outcome.figures, indent=2) + '\n')
    print(f'\n{name}:', json.dumps(outcome.figures))
    return outcome.figures


def services_of(instances):
    return {name.split('_v')[0] for name in instances}


def test_every_worker_runs_every_service(cluster, chat):
    """Each worker runs an instance of every service, registered with the
    worker's address and routed by the load balancer."""
    assert cluster.workers == list(WORKERS)
    for k in WORKERS:
        registered = chat.registered(k)
        assert services_of(registered) == set(SERVICES)
        assert all(address.startswith(f'{cluster.address(k)}:')
                   for address in registered.values()), registered
        assert wait_for(lambda k=k: chat.routed(k) == set(SERVICES), 10)
    shown = cluster.run('status').stdout
    for k in WORKERS:
        assert re.search(rf'^h{k} .* worker .*instances running: 5 of 5',
                         shown, re.M), shown
    assert re.search(r'^h6 .* store .*mariadb \S+ up; redis \S+ up', shown,
                     re.M), shown
    # The chat works: a message posted is pushed to a Socket.IO client.
    listener = Listener(chat).start()
    try:
        rv = chat.post(chat.session)
        assert rv.status_code == 201, rv.text
        assert wait_for(lambda: rv.json()['id'] in listener.ids, 10)
    finally:
        listener.stop()
    # Logged in to a worker, the scripts act on its instances.
    listed = cluster.run('exec', cluster.address(7), 'bash', '-c',
                         'echo "$MF_HOME $HOST_ID"; ls "$MF_HOME/run/instances"'
                         ).stdout.split()
    assert listed[:2] == [str(cluster.folder / 'h7'), f'{cluster.name}-h7']
    assert services_of(name for name in listed[2:]
                       if name.endswith('.info')) == set(SERVICES)


def test_mflogs_follows_every_workers_log(cluster, chat):
    """mflogs with WORKER_HOSTS (as ``up`` prints it) merges the log
    streams of every worker; each line starts with its instance, the
    filter applies to all."""
    assert cluster.printed['WORKER_HOSTS'] == ','.join(
        cluster.address(k) for k in WORKERS)
    env = {**clean_environ(), 'MF_HOME': str(cluster.home / 'elsewhere'),
           'WORKER_HOSTS': cluster.printed['WORKER_HOSTS'],
           'LOGS_USER': cluster.secret('LOGS_USER'),
           'LOGS_PASSWORD': cluster.secret('LOGS_PASSWORD')}
    follower = subprocess.Popen(
        [str(ADMIN / 'bin' / 'mflogs'), '-n', '1000', 'users'], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        time.sleep(3)
    finally:
        follower.terminate()
        out, err = follower.communicate(timeout=10)
    lines = out.splitlines()
    assert lines, err
    assert all(line.startswith('users_v') for line in lines), lines[:5]
    for k in WORKERS:
        assert any(f'_{cluster.name}-h{k}_' in line.split(' | ')[0]
                   for line in lines), (k, lines[:5], err)


def test_a_worker_host_dies_and_comes_back(cluster, chat):
    """Scenarios 1 and 5 of issue 18, under load through the floating
    address (8 clients of GETs and POSTs, 20 Socket.IO clients): every
    process of h8 is killed; its instances leave rotation (target 3 s), no
    GET fails, no POST but one in flight on h8 at that moment, no message
    is lost, the Socket.IO clients on h8 reconnect to h7 and catch up.
    Then h8 comes back (revive-host: what the host runs when it boots) and
    every service on it is routed again, without anything else."""
    assert chat.routed(8) == set(SERVICES)
    outcome = worker_dies(cluster, chat, 8)
    figures = report('cluster-worker-dies', outcome)
    assert figures['left rotation (s)'] is not None
    assert figures['left rotation (s)'] <= FAILOVER_SECONDS, figures
    assert figures['failed GETs'] == 0, outcome.failures
    # One POST per client at most can be in flight on h8 when it dies.
    assert figures['failed POSTs'] <= 8, outcome.failures
    assert figures['messages lost'] == 0, figures
    assert figures['Socket.IO clients reconnected'] >= 1, figures
    assert figures['Socket.IO clients missing a message'] == 0, figures
    assert figures['routed again after revive-host (s)'] is not None
    assert services_of(chat.registered(8)) == set(SERVICES)
    assert cluster.run('status', check=False).returncode == 0


def test_a_worker_cut_off_from_the_registry(cluster, chat):
    """Scenario 4 of issue 18: h7 cannot reach the registry but the load
    balancers reach it. Its instances keep serving until their leases end
    (REGISTRATION_TTL, 10 s on the cluster: an instance that cannot follow
    the revocations must not serve long), then leave rotation once, for as
    long as the partition lasts (no flapping); when it heals they register
    again and are routed within seconds (no stale route either way). No
    request fails throughout."""
    # Every service of h7 in rotation first (a health check that timed out
    # on the loaded machine may have taken one out for a moment).
    assert wait_for(lambda: chat.routed(7) == set(SERVICES), 30), \
        chat.routed(7)
    outcome = worker_cut_off(cluster, chat, 7)
    figures = report('cluster-partition', outcome)
    left = figures['left the registry after (s)']
    assert left is not None and left <= 10 + 2 + 2, figures
    assert figures['back in the registry while cut off'] == 0, figures
    assert figures['routed at the end of the partition'] == [], figures
    assert outcome.failures == [], outcome.failures
    assert figures['messages lost'] == 0, figures
    back = figures['routed again after healing (s)']
    assert back is not None and back <= 10, figures
    assert services_of(chat.registered(7)) == set(SERVICES)


def test_mfupgrade_rolls_a_service_on_every_host(cluster, chat):
    """``mfupgrade roll`` with WORKER_HOSTS and HOST_EXEC (here mfcluster
    exec) rolls the service on each worker in turn, under load: no request
    fails, no message is lost, every instance ends on the new build."""
    tag = '9.9.9'
    subprocess.run([str(ADMIN / 'bin' / 'mfbuild'), '--tag', tag,
                    'messages'], env={**cluster.env,
                                      'MF_HOME': str(cluster.folder)},
                   check=True, capture_output=True, timeout=600)
    env = {**cluster.env, 'WORKER_HOSTS': cluster.printed['WORKER_HOSTS'],
           'HOST_EXEC': f'{MFCLUSTER} exec --name {cluster.name}'}
    with Traffic(chat) as traffic:
        time.sleep(1)
        result = subprocess.run([MFUPGRADE, 'roll', 'messages', tag],
                                env=env, capture_output=True, text=True,
                                timeout=600)
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    order = [line for line in result.stderr.splitlines()
             if line.startswith('mfupgrade: rolling messages on')]
    assert order == [f'mfupgrade: rolling messages on {cluster.address(k)}'
                     for k in WORKERS]
    instances = chat.registered(service='messages')
    assert len(instances) == len(WORKERS), instances
    assert all(name.startswith(f'messages_v{tag}_') for name in instances)
    figures = report('cluster-roll', Outcome(traffic.tally()))
    assert traffic.failures == []
    assert figures['messages lost'] == 0, figures
    # A host it cannot reach stops the roll there.
    bad = {**env, 'WORKER_HOSTS': f'h99,{cluster.address(7)}'}
    result = subprocess.run([MFUPGRADE, 'roll', 'messages'], env=bad,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert 'the roll stopped on h99' in result.stderr
    assert f'rolling messages on {cluster.address(7)}' not in result.stderr


def test_socketio_clients_follow_the_floating_address(cluster, chat):
    """Scenario 3 with the chat: the active load balancer's host dies
    under load; the address answers again, the 20 Socket.IO clients
    reconnect by themselves and miss no message, no message is lost."""
    outcome = lb_dies(cluster, chat)
    figures = report('cluster-lb-dies-chat', outcome)
    answered = figures['the address answered again after (s)']
    assert answered is not None and answered <= FAILOVER_SECONDS, figures
    assert figures['every Socket.IO client reconnected after (s)'] \
        is not None, figures
    assert figures['new requests after that failed'] == 0, figures
    assert figures['messages lost'] == 0, figures
    assert figures['Socket.IO clients missing a message'] == 0, figures
    assert wait_for(lambda: cluster.run('status', check=False).returncode
                    == 0, 20)


# -- the command line ---------------------------------------------------


@pytest.mark.parametrize('args, said', [
    ([], 'usage: mfcluster'),
    (['start'], 'usage: mfcluster'),
    (['up', '--hosts'], '--hosts goes with up'),
    (['up', '--hosts', '7'], '--hosts takes a number from 8'),
    (['up', '--hosts', 'many'], '--hosts takes a number from 8'),
    (['up', 'extra'], "takes no argument 'extra'"),
    (['down', '--hosts', '9'], '--hosts goes with up'),
    (['status', '--bogus'], "unknown option '--bogus'"),
    (['exec', 'h1'], 'exec takes a host and a command'),
    (['kill-host'], 'kill-host takes one host'),
    (['revive-host', 'h1', 'h2'], 'revive-host takes one host'),
    (['up', '--name', 'Bad_Name'], "a cluster's name is 1 to 10"),
    (['up', '--name', 'waytoolongname'], "a cluster's name is 1 to 10"),
])
def test_bad_arguments(tmp_path, args, said):
    env = {**clean_environ(), 'MF_HOME': str(tmp_path)}
    result = mfcluster(env, *args, check=False, timeout=30)
    assert result.returncode != 0
    assert said in result.stderr
    assert 'usage: mfcluster' in result.stderr or 'error:' in result.stderr
    assert not (tmp_path / 'cluster').exists()


def test_unknown_hosts_and_clusters(cluster, tmp_path):
    result = cluster.run('kill-host', 'h99', check=False)
    assert result.returncode == 1
    assert "no host 'h99'" in result.stderr
    env = {**clean_environ(), 'MF_HOME': str(tmp_path)}
    result = mfcluster(env, 'status', '--name', 'nosuch', check=False)
    assert result.returncode == 1
    assert "no cluster 'nosuch'" in result.stderr
    # The same subnet twice is refused.
    other = {**cluster.env, 'MF_HOME': str(tmp_path)}
    name = 'u' + secrets.token_hex(3)
    try:
        result = mfcluster(other, 'up', '--name', name, check=False)
        assert result.returncode == 1
        assert f'the subnet {cluster.prefix}.0/24 is in use' in result.stderr
    finally:
        mfcluster(other, 'down', '--name', name, check=False)


def test_down_removes_a_half_made_cluster(tmp_path):
    """A cluster whose up stopped early: its home and a namespace."""
    name = 'u' + secrets.token_hex(3)
    env = {**clean_environ(), 'MF_HOME': str(tmp_path)}
    home = tmp_path / 'cluster' / name
    home.mkdir(parents=True)
    subprocess.run(['ip', 'netns', 'add', f'{name}-h2'], check=True)
    try:
        result = mfcluster(env, 'down', '--name', name)
        assert f"cluster '{name}' removed" in result.stderr
        listed = subprocess.run(['ip', 'netns', 'list'], capture_output=True,
                                text=True, check=True).stdout
        assert f'{name}-h2' not in listed
        assert not home.exists()
    finally:
        subprocess.run(['ip', 'netns', 'del', f'{name}-h2'],
                       capture_output=True)


def test_down_removes_everything(cluster):
    """Last: the module's cluster goes (the fixture's down finds nothing)."""
    etcd_pids = [pid for k in (1, 2, 3) for pid in cluster.pids(k)]
    lb_pids = [pid for k in LB_HOSTS for pid in cluster.pids(k)]
    assert len(lb_pids) == 2 * LB_PROCESSES
    cluster.run('down')
    assert cluster.namespaces() == []
    assert cluster.links() == []
    assert not (cluster.home / 'cluster' / cluster.name).exists()
    # etcd, supervisord, HAProxy, the watchers, keepalived: all gone.
    for pid in etcd_pids + lb_pids:
        assert not Path(f'/proc/{pid}').exists() or \
            Path(f'/proc/{pid}/stat').read_text().split(') ')[1][0] == 'Z'
    result = cluster.run('down')
    assert 'nothing to do' in result.stderr
