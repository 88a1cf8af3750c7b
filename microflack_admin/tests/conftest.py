"""Fixtures for the admin tools' tests.

Everything real and private to the tests, on 127.0.0.1 and free ports: an
etcd (v3 API only), HAProxy in master-worker mode driven by the load
balancer's watcher, and small HTTP backends (separate processes, so they
can be killed like a crashed instance).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import urllib3

ADMIN = Path(__file__).resolve().parent.parent
TOOLS = ADMIN / 'tools'
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from lb_config import Settings, render  # noqa: E402
from mfplatform import clean_environ  # noqa: E402

from microflack_common.etcd_client import EtcdClient  # noqa: E402
from microflack_common.testing import (  # noqa: E402
    EtcdServer,
    free_port,
    wait_for_port,
    wait_until,
)

# -- helpers -----------------------------------------------------------


def stop_process(process, sig=signal.SIGTERM, timeout=10):
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def need_binary(name):
    path = shutil.which(name) or (f'/usr/sbin/{name}'
                                  if os.access(f'/usr/sbin/{name}', os.X_OK)
                                  else None)
    if path is None:
        pytest.fail(f'{name} is not installed (setup-host.sh installs it)')
    return path


# -- etcd --------------------------------------------------------------


class Etcd(EtcdServer):
    """A private single-node etcd; can be stopped and started again."""

    def start(self, timeout=15):
        try:
            return super().start(timeout)
        except RuntimeError as exc:
            pytest.fail(str(exc))


@pytest.fixture(scope='session')
def etcd_server(tmp_path_factory):
    server = Etcd(tmp_path_factory.mktemp('etcd')).start()
    yield server
    server.stop()


@pytest.fixture
def etcd(etcd_server):
    """A client of the session's etcd; /services is emptied after use."""
    client = EtcdClient([etcd_server.url])
    yield client
    client.delete_prefix('/services/')


# -- HTTP backends -----------------------------------------------------

BACKEND_SCRIPT = r'''
import gzip, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME, PORT = sys.argv[1], int(sys.argv[2])

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlsplit(self.path)
        if NAME.startswith('hangup') and url.path != '/health':
            self.close_connection = True  # hang up without an answer
            return
        query = parse_qs(url.query)
        if url.path == '/slow':
            time.sleep(float(query.get('seconds', ['1'])[0]))
        body = f'{NAME} {self.command} {url.path}\n'.encode() \
            * int(query.get('repeat', ['1'])[0])
        headers = [('Content-Type', query.get('type', ['text/plain'])[0])]
        headers += [tuple(header.split(': ', 1))
                    for header in query.get('header', [])]
        if 'gzip' in query:
            body = gzip.compress(body)
            headers.append(('Content-Encoding', 'gzip'))
        self.send_response(200)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length', 0)))
        self.do_GET()

class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # health checks hang up early; nothing to report

Server(('127.0.0.1', PORT), Handler).serve_forever()
'''


class Backend:
    """An HTTP server answering GET /health, and any GET or POST with
    "<name> <method> <path>" (text/plain); /slow?seconds=N answers after N
    seconds. A backend named hangup* hangs up on every request but health
    checks. Query parameters shape the answer: repeat=N repeats the line N
    times, type=T is its Content-Type, each header=Name: value is sent too,
    gzip=1 sends the body gzip-encoded (Content-Encoding: gzip)."""

    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.address = f'127.0.0.1:{self.port}'
        self.process = subprocess.Popen(
            [sys.executable, '-c', BACKEND_SCRIPT, name, str(self.port)])
        wait_for_port(self.port)

    def kill(self):
        stop_process(self.process, signal.SIGKILL)


@pytest.fixture
def backends():
    """backends(name) starts a backend; all are stopped afterwards."""
    started = []

    def start(name):
        backend = Backend(name)
        started.append(backend)
        return backend
    yield start
    for backend in started:
        backend.kill()


# -- the load balancer -------------------------------------------------


class LoadBalancer:
    """HAProxy (master-worker) and the watcher, as mflb runs them."""

    def __init__(self, directory, etcd_url, watcher_args=(), settings=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.haproxy_bin = need_binary('haproxy')
        self.etcd_url = etcd_url
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.config = self.dir / 'haproxy.cfg'
        self.master_pid_file = self.dir / 'haproxy.pid'
        self.watcher_pid_file = self.dir / 'watcher.pid'
        self.haproxy_log = self.dir / 'haproxy.log'
        self.watcher_log = self.dir / 'watcher.log'
        self.settings = Settings(
            stats_user='admin', stats_password='s3cret:pass',
            stats_socket=str(self.dir / 'admin.sock'),
            state_file=str(self.dir / 'server-state'),
            bind='127.0.0.1', port=self.port, **(settings or {}))
        self.watcher_args = list(watcher_args)
        if settings:
            # The rest of the settings, from the file mflb writes.
            settings_file = self.dir / 'settings.json'
            settings_file.write_text(json.dumps(settings))
            self.watcher_args += ['--settings', str(settings_file)]
        self.haproxy = self.watcher = None
        self.http = urllib3.PoolManager(retries=False)

    def watcher_command(self, *extra):
        s = self.settings
        return [sys.executable, str(TOOLS / 'lb_watcher.py'),
                '--etcd', self.etcd_url, '--config', str(self.config),
                '--haproxy', self.haproxy_bin,
                '--master-pid-file', str(self.master_pid_file),
                '--bind', s.bind, '--port', str(s.port),
                '--stats-user', s.stats_user,
                '--stats-socket', s.stats_socket,
                '--state-file', s.state_file, *extra]

    def _env(self):
        return dict(clean_environ(),
                    STATS_PASSWORD=self.settings.stats_password)

    def start(self):
        # HAProxy starts with no service (as after `lb_watcher.py --once`
        # on an empty registry); the watcher brings it up to date.
        self.config.write_text(render({}, self.settings).text)
        Path(self.settings.state_file).write_text('1\n')
        with open(self.haproxy_log, 'ab') as log:
            self.haproxy = subprocess.Popen(
                [self.haproxy_bin, '-W', '-S', str(self.dir / 'master.sock'),
                 '-f', str(self.config), '-p', str(self.master_pid_file)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        with open(self.watcher_log, 'ab') as log:
            self.watcher = subprocess.Popen(
                self.watcher_command('--pid-file', str(self.watcher_pid_file),
                                     *self.watcher_args),
                env=self._env(), stdout=log, stderr=log,
                stdin=subprocess.DEVNULL)
        wait_for_port(self.port)
        if wait_until(lambda: 'watching' in self.watcher_log.read_text(),
                      10) is None:
            raise RuntimeError(f'the watcher did not start:\n{self.logs()}')
        return self

    def stop(self):
        if self.watcher is not None:
            stop_process(self.watcher)
        if self.haproxy is not None:
            stop_process(self.haproxy)

    def get(self, path, timeout=5, headers=None):
        """GET on a new connection (no keep-alive race with a reload)."""
        headers = dict(headers or {}, Connection='close')
        return self.http.request('GET', self.url + path, timeout=timeout,
                                 headers=headers)

    def body(self, path):
        """The body of GET path, or None unless it answered 200."""
        try:
            response = self.get(path)
        except urllib3.exceptions.HTTPError:
            return None
        return response.data.decode() if response.status == 200 else None

    def routed_to(self, path, backend_name):
        body = self.body(path)
        return body is not None and body.startswith(f'{backend_name} GET ')

    def reloads(self):
        """How many reloads the watcher asked for."""
        return self.watcher_log.read_text().count(' reloading')

    def logs(self):
        return (f'--- watcher ---\n{self.watcher_log.read_text()}'
                f'--- haproxy ---\n{self.haproxy_log.read_text()}')

    def server_states(self):
        """{(backend, server): operational state} from the stats socket
        (0 = down, 2 = up)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(self.settings.stats_socket)
            sock.sendall(b'show servers state\n')
            data = b''
            while chunk := sock.recv(65536):
                data += chunk
        states = {}
        for line in data.decode().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 5 and not line.startswith('#'):
                states[(fields[1], fields[3])] = int(fields[5])
        return states


@pytest.fixture
def make_lb(tmp_path, etcd_server):
    """make_lb(etcd_url=None, watcher_args=(), settings=None) starts a load
    balancer (``settings``: lb_config.Settings fields besides its address
    and stats); each is stopped afterwards, and no HAProxy worker may have
    crashed."""
    started = []

    def make(etcd_url=None, watcher_args=(), settings=None):
        lb = LoadBalancer(tmp_path / f'lb{len(started)}',
                          etcd_url or etcd_server.url, watcher_args,
                          settings)
        started.append(lb)
        return lb.start()
    yield make
    for lb in started:
        lb.stop()
    for lb in started:
        log = lb.haproxy_log.read_text() if lb.haproxy_log.exists() else ''
        assert 'exited with code 139' not in log, lb.logs()


@pytest.fixture(scope='session')
def tls_home(tmp_path_factory):
    """An MF_HOME whose tls folder install/make-tls.sh filled (a local CA,
    the load balancer's certificate for localhost and 127.0.0.1)."""
    home = tmp_path_factory.mktemp('tls')
    subprocess.run([str(ADMIN / 'install' / 'make-tls.sh')], check=True,
                   capture_output=True, timeout=60,
                   env={**clean_environ(), 'MF_HOME': str(home),
                        'MICROFLACK_IP': '127.0.0.1'})
    return home


@pytest.fixture
def lb(etcd, make_lb):
    """A load balancer watching the session's etcd (stopped before the
    registry is emptied)."""
    return make_lb()


# -- the whole platform ------------------------------------------------

@pytest.fixture(scope='session')
def platform(tmp_path_factory):
    """One platform installed by setup-all-in-one.sh for every test that
    needs the real thing (installing one takes minutes); stopped and its
    databases dropped at the end, even if the setup failed.

    MF_TEST_PLATFORM=<MF_HOME of a running platform> reuses that one
    instead (to iterate on tests quickly); it is left running."""
    from mfplatform import Platform, drop_test_databases, existing_platform

    if os.environ.get('MF_TEST_PLATFORM'):
        yield existing_platform(os.environ['MF_TEST_PLATFORM'])
        return
    drop_test_databases()
    platform = Platform(tmp_path_factory.mktemp('mfhome'))
    try:
        started = time.monotonic()
        platform.setup_output = platform.run(
            'install/setup-all-in-one.sh', timeout=900)
        platform.setup_seconds = time.monotonic() - started
        yield platform
    finally:
        platform.run('install/stop-all.sh', check=False)
        drop_test_databases()
