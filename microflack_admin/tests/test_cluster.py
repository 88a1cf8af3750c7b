"""mfcluster (issue 18, first steps): several hosts on this machine, each a
network namespace on one bridge, the registry's 3 etcd members on hosts
h1-h3 and the load balancers on h4 and h5 (mflb's HAProxy and watcher,
keepalived moving the floating address). One cluster for the whole module,
under a name and a subnet of its own (so that it coexists with any other),
removed by ``mfcluster down`` even when a test fails.

Every request goes to the cluster's own subnet, which exists only on its
bridge. Scenario 2 of the issue (the etcd leader's host dies) writes its
measured seconds to $MF_TEST_ARTIFACTS/cluster-leader-dies.json, scenario 3
(the active load balancer's host dies) to cluster-lb-dies.json.
"""
import base64
import csv
import json
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from http.client import HTTPConnection
from pathlib import Path

import pytest
import requests
import socketio
import urllib3
from mfplatform import ROOT, MixedLoad, clean_environ

from microflack_common.etcd_client import EtcdClient, EtcdError
from microflack_common.registration import Registration
from microflack_common.revocation import RevocationList

ADMIN = Path(__file__).resolve().parent.parent
MFCLUSTER = str(ADMIN / 'bin' / 'mfcluster')
ARTIFACTS = Path(os.environ.get('MF_TEST_ARTIFACTS')
                 or ROOT / '.test-home' / 'artifacts')
HOSTS = 8
ROLES = ['registry'] * 3 + ['lb'] * 2 + ['store'] + ['worker'] * 2
WORKERS = (7, 8)
SERVICES = ('ui', 'users', 'tokens', 'messages', 'socketio')
# The targets (2 s for scenario 2, 3 s for scenario 3) are figures
# to measure, written to the artifacts and reported in the README, not
# timed assertions: on a busy CI machine an election can take a client
# timeout longer. The tests check that things carry on, within these.
# Scenario 2: registrations, revocations and watches carry on within this.
CARRY_ON_SECONDS = 6.0
# Scenario 3: the floating address answers again within this.
FAILOVER_SECONDS = 8.0
LB_HOSTS = (4, 5)
# Processes of a load balancer: supervisord, HAProxy's master and worker,
# the watcher, the watchdog, keepalived and its VRRP child.
LB_PROCESSES = 7

http = urllib3.PoolManager(retries=False)


def used_prefixes():
    """The first three octets of every IPv4 address and route here."""
    text = ''
    for args in (['ip', '-o', '-4', 'addr', 'show'],
                 ['ip', '-4', 'route', 'show', 'table', 'all']):
        text += subprocess.run(args, capture_output=True, text=True).stdout
    return set(re.findall(r'\b(\d+\.\d+\.\d+)\.\d+', text))


def free_subnet():
    """A private /24 nothing on this machine uses (the script refuses one
    routed elsewhere in any case)."""
    used = used_prefixes()
    candidates = [f'10.213.{third}' for third in range(100, 250)]
    random.shuffle(candidates)
    for prefix in candidates:
        if prefix not in used:
            return f'{prefix}.0/24'
    pytest.fail('no free 10.213.x.0/24 subnet for the test cluster')


def mfcluster(env, *args, check=True, timeout=120):
    result = subprocess.run([MFCLUSTER, *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, \
            f'mfcluster {" ".join(args)}: {result.returncode}\n' \
            f'{result.stdout}\n{result.stderr}'
    return result


class Cluster:
    def __init__(self, home, name, subnet):
        self.home = home
        self.name = name
        self.subnet = subnet
        self.prefix = subnet.rsplit('.', 1)[0]
        self.env = {**clean_environ(), 'MF_HOME': str(home),
                    'CLUSTER_SUBNET': subnet}
        if os.environ.get('MF_TEST_WHEELHOUSE'):
            # The test command's wheelhouse (the load balancers' tools).
            self.env['WHEELHOUSE'] = os.environ['MF_TEST_WHEELHOUSE']
        self.printed = None

    def run(self, verb, *args, check=True, timeout=120):
        return mfcluster(self.env, verb, '--name', self.name, *args,
                         check=check, timeout=timeout)

    def up(self):
        self.printed = parse_up(self.run('up').stdout)
        return self.printed

    def address(self, k):
        return f'{self.prefix}.{k + 1}'

    def namespace(self, k):
        return f'{self.name}-h{k}'

    @property
    def etcd_urls(self):
        return self.printed['ETCD'].split(',')

    @property
    def vip(self):
        return f'{self.prefix}.100'

    def vip_holders(self):
        """The hosts whose eth0 has the floating address now."""
        return [k for k in LB_HOSTS if f' {self.vip}/' in subprocess.run(
            ['ip', '-n', self.namespace(k), '-o', '-4', 'addr', 'show',
             'dev', 'eth0'], capture_output=True, text=True).stdout]

    def pids(self, k):
        """The processes of host k, but for keepalived's health checks (a
        curl every second, forked by its VRRP process)."""
        listed = subprocess.run(
            ['ip', 'netns', 'pids', self.namespace(k)], capture_output=True,
            text=True, check=True).stdout.split()
        return sorted(pid for pid in listed if not health_check(pid))

    def namespaces(self):
        listed = subprocess.run(['ip', 'netns', 'list'], capture_output=True,
                                text=True, check=True).stdout
        return sorted(line.split()[0] for line in listed.splitlines()
                      if line.startswith(f'{self.name}-'))

    def links(self):
        listed = subprocess.run(['ip', '-o', 'link', 'show'],
                                capture_output=True, text=True,
                                check=True).stdout
        names = [line.split(': ')[1].split('@')[0]
                 for line in listed.splitlines()]
        return sorted(n for n in names if n.startswith(f'{self.name}-'))


def process_line(pid):
    """(command name, parent pid) of a process; None once it is gone."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    name = stat[stat.index('(') + 1:stat.rindex(')')]
    return name, stat[stat.rindex(')') + 2:].split()[1]


def health_check(pid):
    """Whether a process is one of keepalived's checks: curl, or a fork of
    keepalived's VRRP process (itself a child of keepalived) not yet
    curl. One gone meanwhile counts too."""
    line = process_line(pid)
    if line is None or line[0] == 'curl':
        return True
    parents = []
    while line and line[0] == 'keepalived' and len(parents) < 3:
        parents.append(line)
        line = process_line(line[1])
    return len(parents) >= 3


def parse_up(stdout):
    """``up``'s output: its settings (NAME=value lines) and its hosts
    (host, address, role, namespace)."""
    printed = {'hosts': []}
    for line in stdout.splitlines():
        if re.match(r'^[A-Z_]+=', line):
            name, value = line.split('=', 1)
            printed[name] = value
        elif line.strip():
            printed['hosts'].append(line.split())
    return printed


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


def leaders(cluster):
    found = []
    for k, url in enumerate(cluster.etcd_urls, start=1):
        status = member_status(url)
        if status['header']['member_id'] == status['leader']:
            found.append(k)
    return found


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


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail('mfcluster needs root (network namespaces)')
    cluster = Cluster(tmp_path_factory.mktemp('cluster-home'),
                      't' + secrets.token_hex(3), free_subnet())
    try:
        cluster.up()
        yield cluster
    finally:
        mfcluster(cluster.env, 'down', '--name', cluster.name, check=False)


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
    assert len(leaders(cluster)) == 1
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
        [leader] = leaders(cluster)
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
        assert len(leaders(cluster)) == 1
        shown = cluster.run('status').stdout
        assert shown.count(': healthy, ') == 3
    finally:
        stop.set()
        registration.stop()
        revocations.mirror.stop()
        followers.mirror.stop()


# -- the load balancers -------------------------------------------------


def fetch(address, path, timeout=1.0):
    """(status, body) of a GET on a new connection (none kept to a host
    that may die), or None when nothing answers."""
    conn = HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request('GET', path, headers={'Connection': 'close'})
        response = conn.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return None
    finally:
        conn.close()


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


class Chat:
    """The chat at the cluster's floating address: a user and its token,
    the load balancer's statistics."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.url = f'http://{cluster.vip}'
        self.session = requests.Session()
        self.session.trust_env = False
        secrets_file = (cluster.home / 'cluster' / cluster.name / 'secrets'
                        / 'secrets.env')
        values = dict(line.split('=', 1) for line in
                      secrets_file.read_text().splitlines() if '=' in line)
        self.stats_auth = (values['STATS_USER'], values['STATS_PASSWORD'])
        nickname = 'c' + secrets.token_hex(4)
        rv = self.session.post(f'{self.url}/api/users', timeout=10, json={
            'nickname': nickname, 'password': 'secret'})
        assert rv.status_code == 201, rv.text
        rv = self.session.post(f'{self.url}/api/tokens', timeout=10,
                               auth=(nickname, 'secret'))
        assert rv.status_code == 200, rv.text
        self.headers = {'Authorization': f'Bearer {rv.json()["token"]}'}

    def servers(self):
        """{instance: (status, check status)} of every server the load
        balancer holding the floating address has."""
        rv = self.session.get(f'{self.url}/stats;csv', auth=self.stats_auth,
                              timeout=2)
        rv.raise_for_status()
        rows = list(csv.DictReader(rv.text.lstrip('# ').splitlines()))
        return {row['svname']: (row['status'], row['check_status'])
                for row in rows
                if row['svname'] not in ('FRONTEND', 'BACKEND')}

    def routed(self, k):
        """The services with an instance of host k UP, checked."""
        tag = f'_{self.cluster.name}-h{k}_'
        try:
            servers = self.servers()
        except requests.RequestException:
            return set()
        return {name.split('_v')[0] for name, (status, check) in
                servers.items()
                if tag in name and status == 'UP' and check == 'L7OK'}

    def registered(self, k):
        """The instances of host k in the registry."""
        tag = f'_{self.cluster.name}-h{k}_'
        client = EtcdClient(self.cluster.etcd_urls, timeout=1)
        return {kv.key.rsplit('/', 1)[1]
                for kv in client.get_prefix('/services/').kvs
                if '/upstream/' in kv.key and tag in kv.key}

    def get(self, session):
        return session.get(f'{self.url}/api/messages', timeout=10)

    def post(self, session):
        return session.post(f'{self.url}/api/messages', timeout=10,
                            headers=self.headers,
                            json={'source': f'load {uuid.uuid4().hex}'})

    def stored(self):
        """The ids of every message, page after page."""
        ids, path = set(), '/api/messages?updated_since=0'
        while True:
            rv = self.session.get(f'{self.url}{path}', timeout=10)
            assert rv.status_code == 200, rv.text
            page = rv.json()
            ids.update(message['id'] for message in page['messages'])
            if not page['_meta']['more']:
                return ids
            path = page['_links']['next']


class Listener:
    """A Socket.IO client at the floating address that reconnects by
    itself and, like the chat's page, catches up on every (re)connection
    from the changes feed; keeps the ids of the messages it got."""

    def __init__(self, chat):
        self.chat = chat
        self.ids = set()
        self.connections = 0
        self.since = None
        self.http = requests.Session()
        self.http.trust_env = False
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                   reconnection_delay_max=1,
                                   randomization_factor=0.5)
        self.sio.on('connect', self._connected)
        self.sio.on('updated_model', self._updated)

    def _connected(self):
        self.connections += 1
        if self.since is None:
            return
        rv = self.http.get(f'{self.chat.url}/api/messages', timeout=10,
                          params={'updated_since': int(self.since) - 1})
        if rv.status_code == 200:
            self.ids.update(m['id'] for m in rv.json()['messages'])

    def _updated(self, data):
        if data.get('class') == 'Message':
            self.ids.add(data['model']['id'])
            self.since = max(self.since or 0, data['model']['updated_at'])

    def start(self):
        self.sio.connect(self.chat.url, transports=['websocket'],
                         socketio_path='/socket.io', wait_timeout=10)
        return self

    def stop(self):
        self.sio.disconnect()


@pytest.fixture(scope='module')
def chat(cluster):
    url = f'http://{cluster.vip}/api/messages'
    assert wait_for(lambda: fetch(cluster.vip, '/api/messages') is not None
                    and fetch(cluster.vip, '/api/messages')[0] == 200, 30), url
    return Chat(cluster)


def report(name, figures):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f'{name}.json').write_text(
        json.dumps(figures, indent=2) + '\n')
    print(f'\n{name}:', json.dumps(figures))


def test_every_worker_runs_every_service(cluster, chat):
    """Each worker runs an instance of every service, registered with the
    worker's address and routed by the load balancer."""
    for k in WORKERS:
        registered = chat.registered(k)
        assert {name.split('_v')[0] for name in registered} == set(SERVICES)
        client = EtcdClient(cluster.etcd_urls, timeout=1)
        for kv in client.get_prefix('/services/').kvs:
            if '/upstream/' in kv.key and f'-h{k}_' in kv.key:
                assert kv.value.startswith(f'{cluster.address(k)}:'), kv
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


def test_mflogs_follows_every_workers_log(cluster, chat):
    """mflogs with LOG_HOSTS (as ``up`` prints it) merges the log streams
    of every worker; each line starts with its instance, the filter
    applies to all."""
    assert cluster.printed['LOG_HOSTS'] == ','.join(
        cluster.address(k) for k in WORKERS)
    secrets_file = (cluster.home / 'cluster' / cluster.name / 'secrets'
                    / 'secrets.env')
    values = dict(line.split('=', 1) for line in
                  secrets_file.read_text().splitlines() if '=' in line)
    env = {**clean_environ(), 'MF_HOME': str(cluster.home / 'elsewhere'),
           'LOG_HOSTS': cluster.printed['LOG_HOSTS'],
           'LOGS_USER': values['LOGS_USER'],
           'LOGS_PASSWORD': values['LOGS_PASSWORD']}
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
    listeners = [Listener(chat).start() for _ in range(20)]
    try:
        with MixedLoad(chat.get, chat.post, clients=8) as load:
            time.sleep(2)
            killed = time.monotonic()
            cluster.run('kill-host', 'h8')
            assert wait_for(lambda: not chat.routed(8), 10, 0.02)
            out = time.monotonic() - killed
            time.sleep(3)
            reconnected = sum(listener.connections > 1
                              for listener in listeners)
            revived = time.monotonic()
            cluster.run('revive-host', 'h8', timeout=180)
            assert wait_for(lambda: chat.routed(8) == set(SERVICES), 20,
                            0.05)
            routed_again = time.monotonic() - revived
            time.sleep(2)
        stored = chat.stored()
        created = set(load.created)
        time.sleep(1)      # the last pushes
        missed = [len(created - listener.ids) for listener in listeners]
    finally:
        for listener in listeners:
            listener.stop()
    failed_gets = [f for f in load.failures if f[0] == 'GET']
    failed_posts = [f for f in load.failures if f[0] == 'POST']
    figures = {'left rotation (s)': round(out, 3),
               'requests': load.requests,
               'failed GETs': len(failed_gets),
               'failed POSTs': len(failed_posts),
               'messages lost': len(created - stored),
               'Socket.IO clients reconnected': reconnected,
               'Socket.IO clients missing a message': sum(map(bool, missed)),
               'routed again after revive-host (s)': round(routed_again, 3)}
    report('cluster-worker-dies', figures)
    assert out <= FAILOVER_SECONDS, figures
    assert failed_gets == [], load.failures
    # One POST per client at most can be in flight on h8 when it dies.
    assert len(failed_posts) <= 8, load.failures
    assert created <= stored
    assert reconnected >= 1, figures
    assert not any(missed), figures
    assert {name.split('_v')[0] for name in chat.registered(8)} == \
        set(SERVICES)
    assert cluster.run('status', check=False).returncode == 0


def partition(cluster, k, cut):
    """Cut host k off from the registry hosts (or heal it): its packets to
    them go nowhere; the load balancers still reach it."""
    for member in (1, 2, 3):
        subprocess.run(['ip', '-n', cluster.namespace(k), 'route',
                        'add' if cut else 'del', 'blackhole',
                        f'{cluster.address(member)}/32'], check=True)


def test_a_worker_cut_off_from_the_registry(cluster, chat):
    """Scenario 4 of issue 18: h7 cannot reach the registry but the load
    balancers reach it. Its instances keep serving until their leases end
    (REGISTRATION_TTL, 10 s on the cluster: an instance that cannot follow
    the revocations must not serve long), then leave rotation once, for as
    long as the partition lasts (no flapping); when it heals they register
    again and are routed within seconds (no stale route either way). No
    request fails throughout."""
    assert chat.routed(7) == set(SERVICES)
    seen = []       # (seconds since the cut, h7's instances registered)
    try:
        with MixedLoad(chat.get, chat.post, clients=8) as load:
            cut = time.monotonic()
            partition(cluster, 7, True)
            while time.monotonic() - cut < 16:
                seen.append((time.monotonic() - cut,
                             len(chat.registered(7))))
                time.sleep(0.2)
            unrouted = chat.routed(7)
            healed = time.monotonic()
            partition(cluster, 7, False)
            assert wait_for(lambda: chat.routed(7) == set(SERVICES), 20,
                            0.05)
            back = time.monotonic() - healed
            time.sleep(1)
    finally:
        subprocess.run(['ip', '-n', cluster.namespace(7), 'route', 'flush',
                        'type', 'blackhole'], capture_output=True)
    gone = [at for at, count in seen if count == 0]
    changes = sum(1 for (_, a), (_, b) in zip(seen, seen[1:], strict=False)
                  if a != b)
    figures = {'left the registry after (s)': round(gone[0], 3) if gone
               else None,
               'registry changes during the partition': changes,
               'routed again after healing (s)': round(back, 3),
               'requests': load.requests,
               'failed requests': len(load.failures)}
    report('cluster-partition', figures)
    assert gone, seen
    # Out once, and for good while cut off (the 5 instances may expire
    # in a few steps, never come back).
    assert all(count == 0 for at, count in seen if at >= gone[0]), seen
    assert gone[0] <= 10 + 2 + 2, seen
    assert unrouted == set(), unrouted
    assert load.failures == [], load.failures
    assert back <= 10, figures
    assert {name.split('_v')[0] for name in chat.registered(7)} == \
        set(SERVICES)


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
