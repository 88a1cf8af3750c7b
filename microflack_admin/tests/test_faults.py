"""Faults injected into a running platform under steady load (issue 15).

The platform here is private to this module (its own ports, MF_HOME and
databases), so that a fault cannot disturb the other tests; each test
leaves it healthy for the next. Each fault is bounded in time.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import socketio
from mfbench_faults import (
    kill_database_connections,
    program_pid,
    supervisorctl,
)
from mfplatform import (
    ADMIN,
    MixedLoad,
    Platform,
    checkout_db_prefix,
    drop_test_databases,
    table_ids,
)

from microflack_common.testing import free_port

DB_PREFIX = checkout_db_prefix('mffault')
# Connections one client address may hold (the platform's setting here).
CLIENT_MAXCONN = 150
# Seconds of failed health checks after which the watchdog kills an
# instance (the platform's setting here: 30 by default).
WATCHDOG_TIMEOUT = 4


@pytest.fixture(scope='module')
def faulty(tmp_path_factory):
    drop_test_databases(DB_PREFIX)
    # Its own Redis (setup-all-in-one starts one there): a test kills it.
    platform = Platform(tmp_path_factory.mktemp('mffaults'),
                        {'MF_DB_PREFIX': DB_PREFIX,
                         'LB_CLIENT_MAXCONN': str(CLIENT_MAXCONN),
                         'WATCHDOG_TIMEOUT': str(WATCHDOG_TIMEOUT),
                         'REDIS': f'127.0.0.1:{free_port()}'})
    try:
        platform.run('install/setup-all-in-one.sh', timeout=900)
        yield platform
    finally:
        platform.run('install/stop-all.sh', check=False)
        drop_test_databases(DB_PREFIX)


def bearer(token):
    return {'Authorization': f'Bearer {token}'}


def test_lost_database_connections_cost_no_get_and_no_500(faulty):
    """The services' MariaDB connections killed every 0.3 s for 6 s under
    GET+POST load on messages and users: no GET fails, no request answers
    500 or an HTML page; a POST that could not be run again is refused with
    503 JSON and Retry-After, and every POST answered 201 is stored."""
    lb = faulty.lb
    token = faulty.user_with_token(f'db{uuid.uuid4().hex[:8]}')
    messages = MixedLoad(
        clients=3,
        get=lambda s: s.get(f'{lb}/api/messages?limit=20',
                            headers=bearer(token), timeout=15),
        post=lambda s: s.post(f'{lb}/api/messages', headers=bearer(token),
                              json={'source': 'through a fault'}, timeout=15))
    users = MixedLoad(
        clients=2,
        get=lambda s: s.get(f'{lb}/api/users?limit=20',
                            headers=bearer(token), timeout=15),
        post=lambda s: s.post(f'{lb}/api/users', timeout=15, json={
            'nickname': f'u{uuid.uuid4().hex[:12]}', 'password': 'pw'}))
    killed = []
    stop = threading.Event()

    def killer():
        time.sleep(1)
        while not stop.wait(0.3):
            killed.append(kill_database_connections(faulty))

    thread = threading.Thread(target=killer, daemon=True)
    with messages, users:
        thread.start()
        time.sleep(7)
        stop.set()
        thread.join(10)
        time.sleep(0.5)
    assert sum(killed) >= 10, killed         # the fault did happen
    failures = messages.failures + users.failures
    print(f'{sum(killed)} connections killed; '
          f'{messages.requests + users.requests} requests, '
          f'{len(failures)} refused: {failures[:5]}')
    assert [f for f in failures if f[0] == 'GET'] == []
    for method, status, body, _ in failures:
        assert status == 503, (method, status, body)
        assert json.loads(body)['error']
    assert messages.created and users.created
    assert set(messages.created) <= table_ids(f'{DB_PREFIX}messages',
                                              'messages')
    assert set(users.created) <= table_ids(f'{DB_PREFIX}users', 'users')


def slow_post(port, path, token, stop, body_size=200, pause=1.0):
    """A client that sends a POST's headers at once, then its body a byte
    every ``pause`` seconds; returns the socket (closed at ``stop``)."""
    sock = socket.create_connection(('127.0.0.1', port), timeout=30)
    sock.sendall((f'POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                  f'Authorization: Bearer {token}\r\n'
                  f'Content-Type: application/json\r\n'
                  f'Content-Length: {body_size}\r\n\r\n').encode())

    def dribble():
        try:
            while not stop.wait(pause):
                sock.sendall(b' ')
        except OSError:
            pass        # the load balancer gave up on it: as it should
    threading.Thread(target=dribble, daemon=True).start()
    return sock


def test_slow_request_bodies_hold_no_instance(faulty):
    """60 clients sending their POST bodies a byte a second, for longer
    than the load balancer waits for a request: the other clients are
    served as usual (the bodies wait in HAProxy, not in gunicorn's
    threads), and the slow ones are answered 408 without reaching the
    service."""
    lb = faulty.lb
    port = int(faulty.env['LB_PORT'])
    token = faulty.user_with_token(f'slow{uuid.uuid4().hex[:8]}')
    stop = threading.Event()
    load = MixedLoad(
        clients=3,
        get=lambda s: s.get(f'{lb}/api/messages?limit=20',
                            headers=bearer(token), timeout=15),
        post=lambda s: s.post(f'{lb}/api/messages', headers=bearer(token),
                              json={'source': 'beside slow clients'},
                              timeout=15))
    slow = [slow_post(port, '/api/messages', token, stop) for _ in range(60)]
    try:
        with load:
            time.sleep(8)
        answers = []
        for sock in slow:
            sock.settimeout(10)
            try:
                answers.append(sock.recv(200).split(b'\r\n', 1)[0])
            except OSError as exc:
                answers.append(repr(exc))
    finally:
        stop.set()
        for sock in slow:
            sock.close()
    print(f'{load.requests} requests beside 60 slow bodies, '
          f'{len(load.failures)} failed: {load.failures[:3]}')
    assert load.requests > 100
    assert load.failures == []
    assert set(answers) == {b'HTTP/1.1 408 Request Time-out'}, answers[:5]


def test_one_client_address_holds_at_most_client_maxconn(faulty):
    """Past LB_CLIENT_MAXCONN open connections from one address, the next
    is refused at once; once they close, that address is served again.
    (From an address of its own: the services' keep-alive connections to
    the load balancer come from 127.0.0.1 and count there.)"""
    port = int(faulty.env['LB_PORT'])
    source = ('127.0.0.50', 0)
    held = []
    try:
        for _ in range(CLIENT_MAXCONN):
            held.append(socket.create_connection(
                ('127.0.0.1', port), timeout=5, source_address=source))
        time.sleep(0.2)
        extra = None
        try:
            # Refused: reset (at once, or under the connect) or closed.
            extra = socket.create_connection(('127.0.0.1', port), timeout=5,
                                             source_address=source)
            extra.sendall(b'GET /api/messages HTTP/1.1\r\nHost: x\r\n\r\n')
            extra.settimeout(5)
            refused = extra.recv(100) == b''
        except OSError:
            refused = True
        finally:
            if extra is not None:
                extra.close()
        assert refused, 'a connection past the limit was served'
    finally:
        for sock in held:
            sock.close()

    def served_again():
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=5,
                                          source_address=source) as sock:
                sock.sendall(b'GET /api/messages?limit=1 HTTP/1.1\r\n'
                             b'Host: x\r\nConnection: close\r\n\r\n')
                return sock.recv(12) == b'HTTP/1.1 200'
        except OSError:
            return False    # the closed ones may still count a moment
    faulty.wait_for(served_again, what='served again')


def instance_processes(platform, instance):
    """The gunicorn master of a native instance and its workers."""
    master = program_pid(platform, instance)
    workers = subprocess.run(['pgrep', '-P', str(master)],
                             capture_output=True, text=True).stdout.split()
    return [master, *map(int, workers)]


def routed_servers(platform, backend):
    return sorted(server for (proxy, server), row in platform.stats().items()
                  if proxy == backend and server not in ('FRONTEND', 'BACKEND')
                  and row['status'] == 'UP')


def listening(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
        return True
    except OSError:
        return False


def test_a_hung_instance_is_replaced(faulty):
    """One of two messages instances hangs (SIGSTOP, never resumed) under
    load: it is out of the rotation after two failed health checks; the
    watchdog kills it after WATCHDOG_TIMEOUT s and the supervisor starts
    it again, so that a new process of it serves and is routed within
    WATCHDOG_TIMEOUT + 10 s. No GET fails or waits past 12 s, every POST
    answered 201 is stored, the hung processes are gone. Then stopped by
    mfkill, it stays stopped."""
    lb = faulty.lb
    second = faulty.run('mfrun', 'messages').stdout.split()[-1]
    port = int(second.rsplit('_', 1)[1])
    try:
        faulty.wait_for(lambda: len(routed_servers(
            faulty, 'messages_backend')) == 2, timeout=20, what='2 routed')
        token = faulty.user_with_token(f'hung{uuid.uuid4().hex[:8]}')
        load = MixedLoad(
            clients=4,
            # A client that gives up after 12 s: longer is a failure.
            get=lambda s: s.get(f'{lb}/api/messages?limit=20',
                                headers=bearer(token), timeout=12),
            post=lambda s: s.post(f'{lb}/api/messages', headers=bearer(token),
                                  json={'source': 'beside a hung one'},
                                  timeout=30))
        processes = instance_processes(faulty, second)
        old = processes[0]
        with load:
            time.sleep(1)
            for pid in processes:
                os.kill(pid, signal.SIGSTOP)
            hung = time.monotonic()
            try:
                faulty.wait_for(lambda: second not in routed_servers(
                    faulty, 'messages_backend'), timeout=5,
                    what='out of the rotation')

                def replaced():
                    pid = program_pid(faulty, second)
                    return pid not in (None, old) and second in \
                        routed_servers(faulty, 'messages_backend')
                faulty.wait_for(replaced, timeout=WATCHDOG_TIMEOUT + 10,
                                interval=0.2, what='replaced and routed')
                print(f'{second} hung: a new process routed after '
                      f'{time.monotonic() - hung:.1f} s')
            finally:
                for pid in processes:   # what is left, if the test failed
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
            time.sleep(1)
        print(f'{load.requests} requests, failed: {load.failures}')
        assert [f for f in load.failures if f[0] == 'GET'] == []
        assert set(load.created) <= table_ids(f'{DB_PREFIX}messages',
                                              'messages')
        assert not any(Path('/proc', str(pid)).exists() for pid in processes)
        log = (faulty.home / 'logs' / 'lb.log').read_text()
        assert f'killed {second} (pid {old} and its process group)' in log
        # An operator's stop is not undone, though the instance answers no
        # health check while it drains.
        faulty.run('mfkill', second)
        time.sleep(WATCHDOG_TIMEOUT + 2)
        assert program_pid(faulty, second) is None
        assert not listening(port)
        assert second not in faulty.instances('messages')
    finally:
        faulty.run('mfkill', second, check=False)


def stop_daemon(pid_file, signal_number=signal.SIGTERM):
    """Stop a daemon of the platform; returns its command line."""
    pid = int(pid_file.read_text())
    command = (Path('/proc') / str(pid) / 'cmdline').read_bytes() \
        .rstrip(b'\0').split(b'\0')
    os.kill(pid, signal_number)
    deadline = time.monotonic() + 10
    while Path('/proc', str(pid)).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return command


def stop_etcd(platform):
    """Stop the platform's etcd; returns what restarts it."""
    pid_file = platform.home / 'run' / 'etcd.pid'
    command = stop_daemon(pid_file)

    def start():
        with open(platform.home / 'logs' / 'etcd.log', 'ab') as log:
            process = subprocess.Popen(command, stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        pid_file.write_text(f'{process.pid}\n')

        def answers():
            try:
                return platform.http.post(f'{platform.etcd}/v3/kv/range',
                                          json={'key': 'AA=='},
                                          timeout=1).ok
            except requests.RequestException:
                return False
        platform.wait_for(answers, timeout=20, what='etcd answers')
    return start


def test_revoked_tokens_stay_refused_while_etcd_is_down(faulty):
    """A token revoked before etcd stops is refused by every service (and
    every worker of it) while etcd is down; a second token of the same
    user, from the same second, stays valid."""
    lb = faulty.lb
    nickname = f'rev{uuid.uuid4().hex[:8]}'
    valid = faulty.user_with_token(nickname)
    response = faulty.http.post(f'{lb}/api/tokens', timeout=10,
                                auth=(nickname, 'secret'))
    revoked = response.json()['token']
    assert revoked != valid
    assert faulty.http.delete(f'{lb}/api/tokens', headers=bearer(revoked),
                              timeout=10).status_code == 204
    time.sleep(0.5)
    start_etcd = stop_etcd(faulty)
    try:
        for _ in range(6):      # every worker of every instance, likely
            for token, allowed in ((revoked, False), (valid, True)):
                checks = [
                    faulty.http.get(f'{lb}/api/tokens', headers=bearer(token),
                                    timeout=10),
                    faulty.http.post(f'{lb}/api/messages', timeout=10,
                                     headers=bearer(token),
                                     json={'source': 'during an outage'}),
                    faulty.http.put(f'{lb}/api/users/me', timeout=10,
                                    headers=bearer(token)),
                ]
                for check in checks:
                    if allowed:
                        assert check.status_code in (200, 201, 204), \
                            (check.request.method, check.url, check.text)
                    else:
                        assert check.status_code == 401, \
                            (check.request.method, check.url, check.text)
    finally:
        start_etcd()


class Listener:
    """A Socket.IO client through the load balancer that keeps the events
    it gets, with the time each came."""

    def __init__(self, lb):
        self.events = []
        self.sio = socketio.Client(reconnection=False)
        for name in ('updated_model', 'resync'):
            self.sio.on(name, self._recorder(name))
        self.sio.connect(lb, transports=['websocket'],
                         socketio_path='/socket.io', wait_timeout=10)

    def _recorder(self, name):
        def record(data=None):
            self.events.append((time.monotonic(), name, data))
        return record

    def sources(self):
        return [data['model'].get('source') for _, name, data in self.events
                if name == 'updated_model' and data['class'] == 'Message']


def test_a_redis_restart_loses_no_message_for_open_pages(faulty):
    """Redis killed for 5 s while messages are posted: when it is back,
    every connected client is told to catch up (resync) within 2 s, and
    the pushes flow again; the messages posted meanwhile are all in the
    changes feed a catching-up client reads."""
    lb = faulty.lb
    token = faulty.user_with_token(f'red{uuid.uuid4().hex[:8]}')
    listener = Listener(lb)
    try:
        def post(source):
            response = faulty.http.post(f'{lb}/api/messages', timeout=10,
                                        headers=bearer(token),
                                        json={'source': source})
            assert response.status_code == 201, response.text
            return response.json()

        first = post('before the outage')
        faulty.wait_for(lambda: 'before the outage' in listener.sources(),
                        what='a push')
        stop_daemon(faulty.home / 'redis' / 'redis.pid', signal.SIGKILL)
        during = [post(f'during the outage {n}') for n in range(3)]
        time.sleep(5)
        # As setup-all-in-one.sh starts it.
        subprocess.run(
            ['bash', '-c', f'source {ADMIN}/lib/common.sh && source '
             f'{ADMIN}/lib/daemons.sh && ensure_redis "$REDIS"'],
            env=faulty.env, check=True, capture_output=True)
        back = time.monotonic()
        resync = faulty.wait_for(lambda: [at for at, name, _ in
                                          listener.events
                                          if name == 'resync' and at > back],
                                 timeout=10, what='a resync')
        print(f'resync {resync[0] - back:.2f} s after Redis came back')
        assert resync[0] - back < 2
        # The services' pushers try again every second: a push they drop
        # until then is followed by their own resync.
        time.sleep(1.5)
        post('after the outage')
        faulty.wait_for(lambda: 'after the outage' in listener.sources(),
                        what='pushes again')
        feed = faulty.http.get(
            f"{lb}/api/messages?updated_since={first['updated_at']}",
            headers=bearer(token), timeout=10).json()['messages']
        assert {m['id'] for m in during} <= {m['id'] for m in feed}
    finally:
        listener.sio.disconnect()


def test_mfrun_fails_when_the_instance_is_not_routed(faulty):
    """The load balancer's watcher is stopped (a killed one is started
    again by the supervisor: stopped through the supervisor here, as an
    operator would): mfrun's instance is healthy and registered but never
    routed, so mfrun stops it and fails, saying why (it exited 0 with a
    warning)."""
    assert supervisorctl(faulty, 'stop', 'lb-watcher').returncode == 0
    try:
        before = faulty.instances('ui')
        result = faulty.run('mfrun', 'ui', check=False, timeout=120,
                            env={'ROUTE_TIMEOUT': '3'})
        assert result.returncode != 0
        assert 'did not route to it' in result.stderr
        assert 'is its watcher running' in result.stderr
        assert faulty.instances('ui') == before
        assert not [path for path in (faulty.home / 'run' / 'instances')
                    .glob('ui_*.info')
                    if path.stem not in before]
    finally:
        faulty.run('mflb', 'start')
    assert faulty.run('mflb', 'status').returncode == 0


def test_a_killed_instance_is_started_again(faulty):
    """The socketio instance killed outright (SIGKILL: no deregistration,
    no drain) runs again under the supervisor, is routed again and
    relays pushes again, without an operator."""
    [instance] = faulty.instances('socketio')
    old = int(supervisorctl(faulty, 'pid', instance).stdout)
    workers = subprocess.run(['pgrep', '-P', str(old)], capture_output=True,
                             text=True).stdout.split()
    assert workers
    # An open page: its WebSocket kept the killed master's eventlet worker
    # alive, holding the port, and the new master never listened.
    page = Listener(faulty.lb)
    os.kill(old, signal.SIGKILL)
    started = time.monotonic()

    def running_again():
        out = supervisorctl(faulty, 'pid', instance).stdout.strip()
        return out.isdigit() and int(out) not in (0, old)
    faulty.wait_for(running_again, timeout=20, what='started again')
    faulty.wait_for(lambda: routed_servers(faulty, 'socketio_backend')
                    == [instance], timeout=20, what='routed again')
    print(f'{instance} killed: routed again after '
          f'{time.monotonic() - started:.1f} s')
    page.sio.disconnect()
    # What serves is the new run, not a worker left over from the old one.
    faulty.wait_for(lambda: not any(Path('/proc', pid).exists()
                                    for pid in workers), timeout=10,
                    what='the old workers gone')
    new = supervisorctl(faulty, 'pid', instance).stdout.strip()
    time.sleep(6)       # a master that cannot bind gives up after 5 s
    assert supervisorctl(faulty, 'pid', instance).stdout.strip() == new
    token = faulty.user_with_token(f'sup{uuid.uuid4().hex[:8]}')
    listener = Listener(faulty.lb)
    try:
        faulty.http.post(f'{faulty.lb}/api/messages', headers=bearer(token),
                         json={'source': 'after a restart'}, timeout=10)
        faulty.wait_for(lambda: 'after a restart' in listener.sources(),
                        what='a push')
    finally:
        listener.sio.disconnect()


def test_the_fault_benchmark_in_short(faulty, tmp_path):
    """mfbench-faults, small: four faults (one an instance hung until the
    watchdog replaces it) and three reload races on this platform; each
    fault's figures are printed, the platform recovers from each, and
    HAProxy matched the registry after every race."""
    out = tmp_path / 'faults.json'
    result = subprocess.run(
        [sys.executable, str(ADMIN / 'tools' / 'mfbench_faults.py'),
         '--home', str(faulty.home), '--clients', '2', '--outage', '2',
         '--only', 'messages instance killed|HAProxy killed|Redis restart|'
                   'hung instance replaced',
         '--trials', '3', '--json', str(out)],
        env=faulty.env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads(out.read_text())
    assert [row['fault'] for row in results['faults']] == [
        'messages instance killed', 'HAProxy killed', 'Redis restart',
        'hung instance replaced']
    for row in results['faults']:
        assert row['recover_s'] is not None, row
        assert row['get_ok'] > 0 and row['lost'] == 0, row
    assert len(results['reload_race_s']) == 3
    assert all(seconds is not None for seconds in results['reload_race_s'])
    assert 'HAProxy killed' in result.stdout
    replaced = results['faults'][-1]['recover_s']
    assert replaced < WATCHDOG_TIMEOUT + 10, replaced
    assert 'reload race: 3 trials' in result.stdout
