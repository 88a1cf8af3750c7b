"""A cluster of hosts made by ``mfcluster`` (issue 18), the chat at its
floating address, and the issue's scenarios under load, each returning
what it measured: shared by ``tests/test_cluster.py``, which checks the
outcomes, and ``mfbench-cluster``, which prints the figures.

Every request goes to the cluster's own subnet, which exists only on its
bridge. Run as root (network namespaces).
"""
import csv
import random
import re
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

import requests
import socketio
from private_platform import MixedLoad

from microflack_common.etcd_client import EtcdClient, EtcdError

ADMIN = Path(__file__).resolve().parent.parent
MFCLUSTER = str(ADMIN / 'bin' / 'mfcluster')
SERVICES = ('ui', 'users', 'tokens', 'messages', 'socketio')
REGISTRY_HOSTS = (1, 2, 3)
LB_HOSTS = (4, 5)
STORE_HOST = 6


class ClusterError(RuntimeError):
    """mfcluster failed; the message has its output."""


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def seconds_until(predicate, timeout, interval=0.05, since=None):
    """Seconds from ``since`` (now) until ``predicate`` holds; None when it
    does not within ``timeout``."""
    start = time.monotonic() if since is None else since
    if wait_for(predicate, timeout - (time.monotonic() - start), interval):
        return round(time.monotonic() - start, 3)
    return None


def used_prefixes():
    """The first three octets of every IPv4 address and route here."""
    text = ''
    for args in (['ip', '-o', '-4', 'addr', 'show'],
                 ['ip', '-4', 'route', 'show', 'table', 'all']):
        text += subprocess.run(args, capture_output=True, text=True).stdout
    return set(re.findall(r'\b(\d+\.\d+\.\d+)\.\d+', text))


def free_subnet():
    """A private /24 nothing on this machine uses (mfcluster refuses one
    routed elsewhere in any case)."""
    used = used_prefixes()
    candidates = [f'10.213.{third}' for third in range(100, 250)]
    random.shuffle(candidates)
    for prefix in candidates:
        if prefix not in used:
            return f'{prefix}.0/24'
    raise ClusterError('no free 10.213.x.0/24 subnet for a cluster')


def mfcluster(env, *args, check=True, timeout=120):
    result = subprocess.run([MFCLUSTER, *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise ClusterError(f'mfcluster {" ".join(args)}: {result.returncode}'
                           f'\n{result.stdout}\n{result.stderr}')
    return result


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


class Cluster:
    """The cluster ``name`` of the MF_HOME ``home``, driven by mfcluster
    with the environment ``env`` (to which MF_HOME and CLUSTER_SUBNET are
    added)."""

    def __init__(self, home, name, subnet, env):
        self.home = Path(home)
        self.name = name
        self.subnet = subnet
        self.prefix = subnet.rsplit('.', 1)[0]
        self.env = {**env, 'MF_HOME': str(home), 'CLUSTER_SUBNET': subnet}
        self.printed = None

    def run(self, verb, *args, check=True, timeout=120):
        return mfcluster(self.env, verb, '--name', self.name, *args,
                         check=check, timeout=timeout)

    def up(self):
        self.printed = parse_up(self.run('up', timeout=600).stdout)
        return self.printed

    def down(self):
        return self.run('down', check=False)

    @property
    def folder(self):
        return self.home / 'cluster' / self.name

    def secret(self, name):
        for line in (self.folder / 'secrets' / 'secrets.env').read_text() \
                .splitlines():
            key, _, value = line.partition('=')
            if key == name:
                return value
        raise KeyError(name)

    def address(self, k):
        return f'{self.prefix}.{k + 1}'

    def namespace(self, k):
        return f'{self.name}-h{k}'

    @property
    def etcd_urls(self):
        return self.printed['ETCD'].split(',')

    @property
    def workers(self):
        return [int(host[0][1:]) for host in self.printed['hosts']
                if host[2] == 'worker']

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

    def leaders(self):
        """The registry hosts whose member says it is the leader."""
        found = []
        for k in REGISTRY_HOSTS:
            try:
                rv = requests.post(
                    f'http://{self.address(k)}:2379/v3/maintenance/status',
                    data='{}', timeout=2)
                status = rv.json()
            except (requests.RequestException, ValueError):
                continue
            if status.get('leader') and \
                    status['header']['member_id'] == status['leader']:
                found.append(k)
        return found

    def partition(self, k, cut):
        """Cut host k off from the registry hosts (or heal it): its packets
        to them go nowhere; the load balancers still reach it."""
        for member in REGISTRY_HOSTS:
            subprocess.run(['ip', '-n', self.namespace(k), 'route',
                            'add' if cut else 'del', 'blackhole',
                            f'{self.address(member)}/32'], check=True)

    def heal_all(self, k):
        subprocess.run(['ip', '-n', self.namespace(k), 'route', 'flush',
                        'type', 'blackhole'], capture_output=True)


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


def new_session():
    session = requests.Session()
    session.trust_env = False
    return session


class Chat:
    """The chat at the cluster's floating address: a user of its own and
    its token, the load balancer's statistics, the registry."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.url = f'http://{cluster.vip}'
        self.session = new_session()
        self.stats_auth = (cluster.secret('STATS_USER'),
                           cluster.secret('STATS_PASSWORD'))
        self.headers = {'Authorization': f'Bearer {self.new_token()}'}

    def new_token(self):
        """A new user's token."""
        nickname = 'c' + secrets.token_hex(4)
        rv = self.session.post(f'{self.url}/api/users', timeout=10, json={
            'nickname': nickname, 'password': 'secret'})
        if rv.status_code != 201:
            raise ClusterError(f'POST /api/users: {rv.status_code} {rv.text}')
        rv = self.session.post(f'{self.url}/api/tokens', timeout=10,
                               auth=(nickname, 'secret'))
        if rv.status_code != 200:
            raise ClusterError(f'POST /api/tokens: {rv.status_code} {rv.text}')
        return rv.json()['token']

    def servers(self):
        """{instance: (status, check status)} of every server of the load
        balancer holding the floating address."""
        rv = self.session.get(f'{self.url}/stats;csv', auth=self.stats_auth,
                              timeout=2)
        rv.raise_for_status()
        rows = list(csv.DictReader(rv.text.lstrip('# ').splitlines()))
        return {row['svname']: (row['status'], row['check_status'])
                for row in rows
                if row['svname'] not in ('FRONTEND', 'BACKEND')}

    def routed(self, k):
        """The services with an instance of host k UP and checked."""
        tag = f'_{self.cluster.name}-h{k}_'
        try:
            servers = self.servers()
        except requests.RequestException:
            return set()
        return {name.split('_v')[0] for name, (status, check) in
                servers.items()
                if tag in name and status == 'UP' and check == 'L7OK'}

    def registered(self, k=None, service=None):
        """{instance: address} of the registry's instances (of host k, of
        a service)."""
        client = EtcdClient(self.cluster.etcd_urls, timeout=1)
        found = {}
        for kv in client.get_prefix('/services/').kvs:
            parts = kv.key.split('/')
            if len(parts) != 5 or parts[3] != 'upstream':
                continue
            if service and parts[2] != service:
                continue
            if k is not None and f'_{self.cluster.name}-h{k}_' not in parts[4]:
                continue
            found[parts[4]] = kv.value
        return found

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
            if rv.status_code != 200:
                raise ClusterError(f'GET {path}: {rv.status_code} {rv.text}')
            page = rv.json()
            ids.update(message['id'] for message in page['messages'])
            if not page['_meta']['more']:
                return ids
            path = page['_links']['next']

    def load(self, clients=8):
        """GETs and POSTs from ``clients`` threads until the block ends."""
        return MixedLoad(self.get, self.post, clients=clients)


class Listener:
    """A Socket.IO client at the floating address that reconnects by
    itself and, like the chat's page, catches up on every reconnection
    from the changes feed; keeps the ids of the messages it got."""

    def __init__(self, chat):
        self.chat = chat
        self.ids = set()
        self.connections = 0
        self.since = None
        self.http = new_session()
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                   reconnection_delay_max=1,
                                   randomization_factor=0.5)
        self.sio.on('connect', self._connected)
        self.sio.on('updated_model', self._updated)

    def _connected(self):
        self.connections += 1
        if self.since is None:
            return
        try:
            rv = self.http.get(f'{self.chat.url}/api/messages', timeout=10,
                               params={'updated_since': int(self.since) - 1})
        except requests.RequestException:
            return
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


@dataclass
class Outcome:
    """What a scenario measured (``figures``, for people) and what went
    wrong (``failures``: the load's failed requests)."""
    figures: dict
    failures: list = field(default_factory=list)


class Traffic:
    """A scenario's load: ``clients`` threads of GETs and POSTs and
    ``sockets`` Socket.IO clients at the floating address, for the time
    of a ``with`` block; then :meth:`tally` says what it cost."""

    def __init__(self, chat, clients=8, sockets=0):
        self.chat = chat
        self.clients = clients
        self.sockets = sockets
        self.listeners = []
        self.load = None

    def __enter__(self):
        self.listeners = [Listener(self.chat).start()
                          for _ in range(self.sockets)]
        self.load = self.chat.load(self.clients).__enter__()
        return self

    def __exit__(self, *exc):
        try:
            self.load.__exit__(*exc)
            time.sleep(1 if self.listeners else 0)     # the last pushes
        finally:
            for listener in self.listeners:
                listener.stop()

    def reconnected(self):
        """The Socket.IO clients that connected again."""
        return sum(listener.connections > 1 for listener in self.listeners)

    def all_reconnected(self):
        return all(listener.connections > 1 and listener.sio.connected
                   for listener in self.listeners)

    @property
    def failures(self):
        return self.load.failures

    def tally(self):
        """Requests, failed GETs and POSTs, messages answered 201 but not
        stored, Socket.IO clients that missed a stored message."""
        created = set(self.load.created)
        figures = {
            'requests': self.load.requests,
            'failed GETs': sum(f[0] == 'GET' for f in self.load.failures),
            'failed POSTs': sum(f[0] == 'POST' for f in self.load.failures),
            'messages lost': len(created - self.chat.stored()),
        }
        if self.listeners:
            figures['Socket.IO clients missing a message'] = sum(
                bool(created - listener.ids) for listener in self.listeners)
        return figures


def worker_dies(cluster, chat, k, clients=8, sockets=20):
    """Scenarios 1 and 5: every process of worker k killed under load,
    then the host comes back (``revive-host``: what it runs at boot)."""
    with Traffic(chat, clients, sockets) as traffic:
        time.sleep(2)
        killed = time.monotonic()
        cluster.run('kill-host', f'h{k}')
        out = seconds_until(lambda: not chat.routed(k), 10, 0.02, killed)
        time.sleep(3)
        reconnected = traffic.reconnected()
        revived = time.monotonic()
        cluster.run('revive-host', f'h{k}', timeout=300)
        back = seconds_until(lambda: chat.routed(k) == set(SERVICES), 60,
                             0.05, revived)
        time.sleep(2)
    return Outcome({
        'left rotation (s)': out,
        **traffic.tally(),
        'Socket.IO clients reconnected': reconnected,
        'routed again after revive-host (s)': back,
    }, traffic.failures)


def worker_cut_off(cluster, chat, k, seconds=16, clients=8):
    """Scenario 4: worker k cut off from the registry, not from the load
    balancers, for ``seconds``; then the partition heals."""
    seen = []       # (seconds since the cut, k's instances registered)
    try:
        with Traffic(chat, clients) as traffic:
            cut = time.monotonic()
            cluster.partition(k, True)
            while time.monotonic() - cut < seconds:
                try:
                    seen.append((time.monotonic() - cut,
                                 len(chat.registered(k))))
                except EtcdError:
                    pass
                time.sleep(0.2)
            routed_when_cut = sorted(chat.routed(k))
            healed = time.monotonic()
            cluster.partition(k, False)
            back = seconds_until(lambda: chat.routed(k) == set(SERVICES), 30,
                                 0.05, healed)
            time.sleep(1)
    finally:
        cluster.heal_all(k)
    gone = [at for at, count in seen if count == 0]
    returned = [at for at, count in seen if gone and at > gone[0] and count]
    return Outcome({
        'left the registry after (s)': round(gone[0], 3) if gone else None,
        'back in the registry while cut off': len(returned),
        'routed at the end of the partition': routed_when_cut,
        'routed again after healing (s)': back,
        **traffic.tally(),
    }, traffic.failures)


def leader_dies(cluster, chat, clients=8):
    """Scenario 2: the etcd leader's host dies under load: how soon the
    registry takes writes and a token revocation works again, whether any
    instance left rotation, how soon the member rejoins."""
    leader = cluster.leaders()
    if len(leader) != 1:
        raise ClusterError(f'no single etcd leader: {leader}')
    leader = leader[0]
    client = EtcdClient(cluster.etcd_urls, timeout=1)
    up_before = sum(status == 'UP' for status, _ in chat.servers().values())
    fewest_up = up_before
    tokens = [chat.new_token() for _ in range(3)]

    def writes():
        try:
            client.put('/bench/leader-dies', str(time.time()))
            return True
        except EtcdError:
            return False

    def revokes():
        token = tokens.pop() if tokens else chat.new_token()
        bearer = {'Authorization': f'Bearer {token}'}
        try:
            rv = chat.session.delete(f'{chat.url}/api/tokens', timeout=5,
                                     headers=bearer)
            if rv.status_code != 204:
                return False
            rv = chat.session.post(f'{chat.url}/api/messages', timeout=5,
                                   headers=bearer, json={'source': 'no'})
            return rv.status_code == 401
        except requests.RequestException:
            return False

    with Traffic(chat, clients) as traffic:
        time.sleep(1)
        killed = time.monotonic()
        cluster.run('kill-host', f'h{leader}')
        write_again = seconds_until(writes, 20, 0.05, killed)
        revoke_again = seconds_until(revokes, 20, 0.05, killed)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            fewest_up = min(fewest_up, sum(
                status == 'UP' for status, _ in chat.servers().values()))
            time.sleep(0.1)
        revived = time.monotonic()
        cluster.run('revive-host', f'h{leader}')
        rejoined = seconds_until(
            lambda: requests.get(f'http://{cluster.address(leader)}:2379/'
                                 'health', timeout=1).ok, 30, 0.1, revived)
        time.sleep(1)
    client.delete('/bench/leader-dies')
    return Outcome({
        'leader': f'h{leader}',
        'registry writes again after (s)': write_again,
        'a revocation works again after (s)': revoke_again,
        'servers UP before': up_before,
        'fewest servers UP meanwhile': fewest_up,
        'member healthy again after revive-host (s)': rejoined,
        **traffic.tally(),
    }, traffic.failures)


def lb_dies(cluster, chat, clients=8, sockets=20):
    """Scenario 3: the active load balancer's host dies under load: how
    soon the floating address answers again (new connections), what
    failed meanwhile (requests in flight, or on connections to the dead
    host), and the Socket.IO clients reconnecting by themselves."""
    holders = cluster.vip_holders()
    if len(holders) != 1:
        raise ClusterError(f'the floating address is on {holders}')
    holder = holders[0]
    with Traffic(chat, clients, sockets) as traffic:
        time.sleep(2)
        killed = time.monotonic()
        cluster.run('kill-host', f'h{holder}')
        answered = seconds_until(
            lambda: (fetch(cluster.vip, '/api/messages', 0.25) or
                     (0,))[0] == 200, 20, 0.02, killed)
        all_back = seconds_until(traffic.all_reconnected, 30, 0.05, killed)
        time.sleep(2)
        new_requests = [fetch(cluster.vip, '/api/messages', 2)
                        for _ in range(20)]
    figures = traffic.tally()
    cluster.run('revive-host', f'h{holder}')
    return Outcome({
        'dead load balancer': f'h{holder}',
        'new holder': ','.join(f'h{k}' for k in cluster.vip_holders()),
        'the address answered again after (s)': answered,
        'every Socket.IO client reconnected after (s)': all_back,
        'new requests after that failed': sum(
            (r or (0,))[0] != 200 for r in new_requests),
        **figures,
    }, traffic.failures)

