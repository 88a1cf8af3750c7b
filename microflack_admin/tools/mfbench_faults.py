"""The fault benchmark (issue 15): one fault at a time injected into a
running platform under steady load, and what each cost.

Load: ``--clients`` threads through the load balancer, each sending
``GET /api/messages?limit=20`` and, every third request, a POST, plus one
Socket.IO client (WebSocket, reconnecting) that records the pushes of the
messages and the ``resync`` events. Each fault is bounded in time; after
it, the benchmark waits until the platform serves as before (every
instance routed again, a GET answered) and counts:

- requests ok and failed (GET and POST), over the fault and its recovery;
- messages lost: answered 201 but not stored, or stored but never shown
  to the open page (no push, and no resync after it that would have made
  the page read it);
- the time to recover: from the end of the fault (the kill, or the end of
  an outage) until the platform serves as before; for an instance hung
  until the watchdog replaces it, from the hang until a new process of it
  serves and is routed.

Then the reload race: ``--trials`` times a registry key added and removed
50-250 ms apart, and the time from the last change until HAProxy's
running servers (``show servers state``) equal the registry's.

By default a private platform is installed with ``setup-all-in-one.sh``
(its own Redis, since one fault kills it) and removed afterwards;
``--home`` runs the faults on the platform of that MF_HOME (it must have a
Redis of its own, started by setup-all-in-one.sh, for the Redis fault).

Run it through ``microflack_admin/bin/mfbench-faults``.
"""
import argparse
import os
import platform as host_platform
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests
import socketio
from mfbench import free_port, print_results, run_measurements, session

from microflack_common.polling import wait_until

PROG = 'mfbench-faults'
ADMIN = Path(__file__).resolve().parent.parent
PAGE = '/api/messages?limit=20'


# -- the load and the open page ------------------------------------------

class Load:
    """Steady GET+POST traffic; counts per phase."""

    def __init__(self, lb, token, clients, timeout=12):
        self.lb, self.token, self.timeout = lb, token, timeout
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.created = {}           # id -> time its POST was sent
        self.reset()
        self.threads = [threading.Thread(target=self._run, args=(n,),
                                         daemon=True) for n in range(clients)]

    def reset(self):
        with self.lock:
            self.counts = {'get_ok': 0, 'get_failed': 0, 'post_ok': 0,
                           'post_failed': 0}
            self.phase_created = []

    def _run(self, number):
        http = session()
        headers = {'Authorization': f'Bearer {self.token}'}
        count = number
        while not self.stop.is_set():
            count += 1
            posting = count % 3 == 0
            sent = time.monotonic()
            try:
                if posting:
                    response = http.post(f'{self.lb}/api/messages',
                                         headers=headers, timeout=self.timeout,
                                         json={'source': 'under a fault'})
                    ok = response.status_code == 201
                else:
                    response = http.get(f'{self.lb}{PAGE}', headers=headers,
                                        timeout=self.timeout)
                    ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            with self.lock:
                kind = 'post' if posting else 'get'
                self.counts[f"{kind}_{'ok' if ok else 'failed'}"] += 1
                if ok and posting:
                    message_id = response.json()['id']
                    # When it was sent: a catch-up read after that time
                    # may find it (it was stored in between).
                    self.created[message_id] = sent
                    self.phase_created.append(message_id)
            time.sleep(0.01)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


class OpenPage:
    """A Socket.IO client as the chat page: the pushed message ids and the
    times resync came."""

    def __init__(self, lb):
        self.pushed = set()
        self.resyncs = []
        self.sio = socketio.Client(reconnection=True,
                                   reconnection_delay=0.5,
                                   reconnection_delay_max=1)
        self.sio.on('updated_model', self._pushed)
        self.sio.on('resync', lambda data=None: self.resyncs.append(
            time.monotonic()))
        # A reconnection is a resync too: the page reads the feeds then.
        self.sio.on('connect', lambda: self.resyncs.append(time.monotonic()))
        self.sio.connect(lb, transports=['websocket'],
                         socketio_path='/socket.io', wait_timeout=10)

    def _pushed(self, data):
        if isinstance(data, dict) and data.get('class') == 'Message':
            self.pushed.add(data['model']['id'])

    def seen(self, message_id, created_at):
        return message_id in self.pushed or any(
            at >= created_at for at in self.resyncs)


# -- the platform's parts --------------------------------------------------

def supervisorctl(platform, *args):
    return subprocess.run(
        [str(platform.home / 'admin-venv' / 'bin' / 'supervisorctl'), '-c',
         str(platform.home / 'supervisor' / 'supervisord.conf'), *args],
        capture_output=True, text=True, timeout=60)


def program_pid(platform, name):
    out = supervisorctl(platform, 'pid', name).stdout.strip()
    return int(out) if out.isdigit() and int(out) > 0 else None


def stats_rows(platform):
    return list(platform.stats().values())


def serves_as_before(platform, servers):
    """Every server routed before is UP again, and a GET is answered."""
    try:
        up = {(row['pxname'], row['svname']) for row in stats_rows(platform)
              if row['status'] == 'UP'}
        with session() as http:
            answered = http.get(f'{platform.lb}{PAGE}',
                                timeout=5).status_code == 200
    except (requests.RequestException, IndexError, KeyError):
        return False
    return answered and servers <= up


def routed_servers(platform):
    return {(row['pxname'], row['svname']) for row in stats_rows(platform)
            if row['svname'] not in ('FRONTEND', 'BACKEND')
            and row['status'] == 'UP'}


def kill_database_connections(platform):
    """As an operator's KILL (or a network fault) would: end every
    connection of the platform's services to MariaDB (their databases
    start with its MF_DB_PREFIX). Returns how many."""
    prefix = platform.env.get('MF_DB_PREFIX', '')
    listing = subprocess.run(
        platform.mariadb('-N', '-e',
                         f"SELECT id FROM information_schema.processlist "
                         f"WHERE db LIKE '{prefix}%'"),
        capture_output=True, text=True, check=True)
    ids = listing.stdout.split()
    if ids:
        subprocess.run(platform.mariadb('-f', '-e', ' '.join(
            f'KILL CONNECTION {int(i)};' for i in ids)), capture_output=True)
    return len(ids)


def pid_file_pid(path):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_command(pid):
    return (Path('/proc') / str(pid) / 'cmdline').read_bytes() \
        .rstrip(b'\0').split(b'\0')


def wait_gone(pid, timeout=10):
    wait_until(lambda: not Path('/proc', str(pid)).exists(), timeout, 0.05)


# -- the faults ------------------------------------------------------------
# Each takes the platform and returns when the fault is over (the moment
# from which recovery is timed).

def kill_program(name_of):
    def fault(platform):
        name = name_of(platform)
        os.kill(program_pid(platform, name), signal.SIGKILL)
    return fault


def first_instance(service):
    return lambda platform: sorted(platform.instance_records(service))[0]


def stop_etcd(seconds):
    def fault(platform):
        pid_file = platform.home / 'run' / 'etcd.pid'
        pid = pid_file_pid(pid_file)
        command = process_command(pid)
        os.kill(pid, signal.SIGTERM)
        wait_gone(pid)
        time.sleep(seconds)
        with open(platform.home / 'logs' / 'etcd.log', 'ab') as log:
            process = subprocess.Popen(command, stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        pid_file.write_text(f'{process.pid}\n')
    return fault


def stop_redis(seconds):
    def fault(platform):
        pid = pid_file_pid(platform.home / 'redis' / 'redis.pid')
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        time.sleep(seconds)
        subprocess.run(['bash', '-c', f'source {ADMIN}/lib/common.sh && '
                        f'source {ADMIN}/lib/daemons.sh && '
                        f'ensure_redis "$REDIS"'],
                       env=platform.env, check=True, capture_output=True)
    return fault


def kill_db_connections(seconds):
    def fault(platform):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            kill_database_connections(platform)
            time.sleep(0.3)
    return fault


def stop_instance_processes(platform, name):
    """SIGSTOP to an instance's master and workers; returns the master's
    pid and theirs."""
    master = program_pid(platform, name)
    workers = subprocess.run(['pgrep', '-P', str(master)],
                             capture_output=True, text=True).stdout.split()
    pids = [master, *map(int, workers)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return master, pids


def hang_instance(seconds):
    def fault(platform):
        name = sorted(platform.instance_records('messages'))[0]
        _, pids = stop_instance_processes(platform, name)
        time.sleep(seconds)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass        # the watchdog replaced it (a hang past its timeout)
    return fault


def watchdog_timeout(platform):
    """The seconds after which the platform's watchdog kills a hung
    instance (from its program's command line; 30 if not found)."""
    conf = platform.home / 'supervisor' / 'programs' / 'watchdog.conf'
    try:
        found = re.search(r"'--timeout' '([0-9.]+)'", conf.read_text())
    except OSError:
        found = None
    return float(found.group(1)) if found else 30.0


def hang_until_replaced(platform):
    """A messages instance hung and never resumed: the fault lasts until
    the watchdog killed it and a new process of it runs (returned: what
    must hold, besides serving as before, for it to be over)."""
    name = sorted(platform.instance_records('messages'))[0]
    master, _ = stop_instance_processes(platform, name)

    def replaced():
        pid = program_pid(platform, name)
        return pid is not None and pid != master \
            and not Path('/proc', str(master)).exists()
    return replaced


def slow_bodies(clients, seconds):
    def fault(platform):
        port = int(platform.env['LB_PORT'])
        sockets = []
        for _ in range(clients):
            sock = socket.create_connection((platform.address, port),
                                            timeout=5)
            sock.sendall(b'POST /api/messages HTTP/1.1\r\nHost: lb\r\n'
                         b'Content-Type: application/json\r\n'
                         b'Content-Length: 200\r\n\r\n')
            sockets.append(sock)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for sock in sockets:
                try:
                    sock.sendall(b' ')
                except OSError:
                    pass
            time.sleep(1)
        for sock in sockets:
            sock.close()
    return fault


def faults(args):
    """(name, what is done, fault)."""
    return [
        ('messages instance killed', 'SIGKILL, 1 of 2',
         kill_program(first_instance('messages'))),
        ('socketio instance killed', 'SIGKILL',
         kill_program(first_instance('socketio'))),
        ('HAProxy killed', 'SIGKILL to the master',
         kill_program(lambda platform: 'lb-haproxy')),
        ('LB watcher killed', 'SIGKILL', kill_program(lambda p: 'lb-watcher')),
        ('etcd outage', f'{args.outage} s', stop_etcd(args.outage)),
        ('Redis restart', f'killed, back after {args.outage} s',
         stop_redis(args.outage)),
        ('DB connections killed', f'every 0.3 s for {args.outage} s',
         kill_db_connections(args.outage)),
        ('messages instance hung', f'SIGSTOP for {args.hang} s, 1 of 2',
         hang_instance(args.hang)),
        ('hung instance replaced', 'SIGSTOP until the watchdog',
         hang_until_replaced),
        ('slow request bodies', f'{args.slow} clients, {args.outage} s',
         slow_bodies(args.slow, args.outage)),
    ]


def run_fault(platform, load, page, name, how, fault, recover_timeout):
    servers = routed_servers(platform)
    load.reset()
    started = time.monotonic()
    print(f'{PROG}: {name} ({how}) ...', flush=True)
    over = fault(platform)
    ended = time.monotonic()
    if over is not None:
        # A fault that ends by itself (the watchdog's kill): timed from
        # its start.
        recover_timeout += watchdog_timeout(platform)
        ended = started
    recovered = wait_until(lambda: (over is None or over())
                           and serves_as_before(platform, servers),
                           recover_timeout, 0.1)
    recover_s = time.monotonic() - ended if recovered else None
    if not recovered:
        try:
            missing = sorted(f'{backend}/{server}' for backend, server
                             in servers - routed_servers(platform))
        except (requests.RequestException, IndexError, KeyError) as exc:
            missing = [repr(exc)]
        print(f'{PROG}: {name}: not served as before within '
              f'{recover_timeout} s; not routed: {missing}', flush=True)
    time.sleep(2)        # what is still in flight, and the pushes
    with load.lock:
        counts = dict(load.counts)
        created = list(load.phase_created)
    stored = stored_ids(platform, created)
    lost = [i for i in created
            if i not in stored or not page.seen(i, load.created[i])]
    return {'fault': name, 'how': how, **counts, 'posted': len(created),
            'lost': len(lost), 'recover_s': recover_s,
            'fault_s': round(ended - started, 1)}


def stored_ids(platform, ids):
    if not ids:
        return set()
    database = platform.env.get('MF_DB_PREFIX', '') + 'messages'
    out = subprocess.run(
        platform.mariadb(
            '-N', '-e', f'SELECT id FROM `{database}`.messages WHERE id IN '
            f'({",".join(str(int(i)) for i in ids)})'),
        capture_output=True, text=True, check=True).stdout
    return {int(line) for line in out.split()}


# -- the reload race -------------------------------------------------------

def haproxy_servers(platform, backend):
    return {row['svname'] for row in stats_rows(platform)
            if row['pxname'] == backend
            and row['svname'] not in ('FRONTEND', 'BACKEND')}


def registered_servers(platform, service):
    """The servers the registry names for the service (the race's keys
    among them while they exist)."""
    return set(platform.registry(f'/services/{service}/upstream') or {})


def reload_race(platform, trials):
    """Add then remove a server key 50-250 ms apart; seconds from the last
    change until HAProxy runs the registry's servers, per trial (None, and
    both sets said, when it did not within 10 s)."""
    backend = 'messages_backend'
    times = []

    def matches():
        return haproxy_servers(platform, backend) == \
            registered_servers(platform, 'messages')
    for trial in range(trials):
        key = f'/services/messages/upstream/race_{trial}'
        platform.etcd_put(key, '127.0.0.1:9', ttl=50)
        time.sleep(random.uniform(0.05, 0.25))
        platform.etcd_delete(key)
        last_change = time.monotonic()
        if wait_until(matches, 10, 0.02):
            times.append(time.monotonic() - last_change)
        else:
            times.append(None)
            print(f'{PROG}: reload race trial {trial}: HAProxy runs '
                  f'{sorted(haproxy_servers(platform, backend))}, the '
                  f"registry says {sorted(registered_servers(platform, 'messages'))}",
                  flush=True)
    return times


# -- the run -----------------------------------------------------------------

def measure(platform, args):
    token = user_token(platform)
    if len(platform.instance_records('messages')) < 2:
        platform.run('mfrun', 'messages')
    results = {'host': host_platform.node(), 'cpus': os.cpu_count(),
               'clients': args.clients, 'faults': []}
    page = OpenPage(platform.lb)
    try:
        with Load(platform.lb, token, args.clients) as load:
            time.sleep(2)
            for name, how, fault in faults(args):
                if args.only and not re.search(args.only, name):
                    continue
                results['faults'].append(run_fault(
                    platform, load, page, name, how, fault,
                    args.recover_timeout))
    finally:
        page.sio.disconnect()
    print(f'{PROG}: the reload race, {args.trials} trials ...', flush=True)
    results['reload_race_s'] = reload_race(platform, args.trials)
    return results


def user_token(platform):
    http = session()
    nickname = f'fault{uuid.uuid4().hex[:8]}'
    http.post(f'{platform.lb}/api/users', timeout=10,
              json={'nickname': nickname, 'password': 'pw'}).raise_for_status()
    response = http.post(f'{platform.lb}/api/tokens', timeout=10,
                         auth=(nickname, 'pw'))
    response.raise_for_status()
    return response.json()['token']


def report(results):
    lines = [f"{'fault':<26} {'what':<28} {'GET ok':>7} {'failed':>6} "
             f"{'POST ok':>7} {'failed':>6} {'lost':>4} {'recover':>8}"]
    for row in results['faults']:
        recover = f"{row['recover_s']:.1f} s" if row['recover_s'] is not None \
            else 'never'
        lines.append(
            f"{row['fault']:<26} {row['how']:<28} {row['get_ok']:>7} "
            f"{row['get_failed']:>6} {row['post_ok']:>7} "
            f"{row['post_failed']:>6} {row['lost']:>4} {recover:>8}")
    race = results['reload_race_s']
    done = [t for t in race if t is not None]
    lines.append(
        f"reload race: {len(race)} trials, HAProxy matched the registry in "
        f"{len(done)}; after the last change: max "
        f"{max(done) if done else float('nan'):.2f} s, median "
        f"{sorted(done)[len(done) // 2] if done else float('nan'):.2f} s")
    return '\n'.join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description='One fault at a time under steady load: '
        'requests ok/failed, messages lost, time to recover.')
    parser.add_argument('--home', type=Path,
                        help='MF_HOME of a running platform (default: a '
                             'private one, removed afterwards)')
    parser.add_argument('--clients', type=int, default=4)
    parser.add_argument('--outage', type=int, default=10,
                        help='seconds of each outage (etcd, Redis, ...)')
    parser.add_argument('--hang', type=int, default=15,
                        help='seconds an instance hangs')
    parser.add_argument('--slow', type=int, default=60,
                        help='clients sending their bodies slowly')
    parser.add_argument('--trials', type=int, default=20,
                        help='trials of the reload race')
    parser.add_argument('--recover-timeout', type=int, default=60)
    parser.add_argument('--only', help='run the faults whose name matches '
                                       'this regular expression')
    parser.add_argument('--json', type=Path, help='write the results here')
    args = parser.parse_args(argv)
    for name in ('clients', 'outage', 'hang', 'slow', 'recover_timeout'):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.trials < 0:
        parser.error('--trials must be at least 0')
    return args


def main(argv=None):
    args = parse_args(argv)
    results = run_measurements(
        PROG, args.home, lambda platform: measure(platform, args),
        'mfbench-faults-', settings={'REDIS': f'127.0.0.1:{free_port()}'})
    if results is None:
        return 1
    print_results(PROG, results,
                  f"{results['clients']} clients (GET + POST) and an open "
                  f"page through the load balancer", report(results),
                  args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
