"""A whole MicroFlack platform in a private MF_HOME, on free loopback ports:
installed by ``setup-all-in-one.sh``, driven through the admin scripts,
looked at over HTTP (the registry, the load balancer's statistics). The one
driver of the platform tests (``tests/mfplatform.py``) and the benchmarks
(``mfbench``, ``mfbench-faults``, ``mfbench-history``).

It needs requests and the standard library only: the benchmarks run in a
virtualenv without microflack_common, whose port and waiting helpers
(standard library only) it loads from the source tree."""
import fnmatch
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

ADMIN = Path(__file__).resolve().parent.parent
ROOT = ADMIN.parent
sys.path.insert(0, str(ROOT / 'microflack_common' / 'src'))
from microflack_common.etcd_client import EtcdClient  # noqa: E402
from microflack_common.loopback import free_port, free_port_pair  # noqa: E402
from microflack_common.polling import wait_until  # noqa: E402

__all__ = ['ADMIN', 'MixedLoad', 'PrivatePlatform', 'ROOT', 'ScriptFailed',
           'clean_environ', 'free_port', 'free_port_pair', 'free_ports_env',
           'host_database_settings', 'http_session', 'mariadb_admin']


# The platforms' address unless a test gives another (MICROFLACK_IP).
LOOPBACK = '127.0.0.1'


class ScriptFailed(AssertionError):
    """An admin script exited non-zero (with its output)."""


def clean_environ():
    """The caller's environment variables a private platform may inherit
    (those ``tests/passenv`` names: the user, proxies, the test command's
    own settings): none of a host installation's settings, so that a
    setting not given comes from the project's defaults."""
    patterns = []
    for line in (ADMIN / 'tests' / 'passenv').read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            patterns.append(line)
    return {name: value for name, value in os.environ.items()
            if any(fnmatch.fnmatchcase(name, pattern)
                   for pattern in patterns)}


def host_database_settings():
    """The caller's MariaDB and Redis settings (DB_HOST, DB_PORT,
    DB_ADMIN_CNF, REDIS; exported by mfvars from this host's
    microflack.conf), for a private platform that uses this host's
    database and Redis, as the benchmarks' do."""
    return {name: os.environ[name]
            for name in ('DB_HOST', 'DB_PORT', 'DB_ADMIN_CNF', 'REDIS')
            if os.environ.get(name)}


def mariadb_admin(*args, admin_cnf=None, host=None, port=None):
    """The mariadb client command with ``args``, as the database's
    administrator, as the admin scripts reach it (lib/daemons.sh:
    mariadb_root): as the client option file ``admin_cnf`` says (a
    platform's DB_ADMIN_CNF), else as root: on the local server's socket
    for this host's system MariaDB (``host`` and ``port`` unset or
    loopback and 3306), over TCP to ``host``:``port`` for another."""
    if admin_cnf:
        return ['mariadb', f'--defaults-extra-file={admin_cnf}', *args]
    host, port = host or '127.0.0.1', str(port or 3306)
    if port == '3306' and (host == 'localhost' or host == '::1'
                           or host.startswith('127.')):
        return ['mariadb', '--protocol=socket', '-uroot', *args]
    return ['mariadb', '--protocol=tcp', '-h', host, '-P', port, '-uroot',
            *args]


def http_session():
    """A session that ignores proxy settings (every platform address is on
    loopback) and, as browsers do, sends an idempotent request once more
    on a new connection when a kept-alive one was closed under it (the
    load balancer's previous worker, after a reload)."""
    http = requests.Session()
    http.trust_env = False
    http.mount('http://', HTTPAdapter(max_retries=Retry(
        total=1, connect=1, read=1, status=0, redirect=0,
        allowed_methods=frozenset({'GET', 'HEAD', 'OPTIONS'}))))
    return http


NO_RATE_LIMITS = {'LB_LOGINS_PER_MINUTE': '0',
                  'LB_REGISTRATIONS_PER_MINUTE': '0',
                  'LB_POSTS_PER_MINUTE': '0'}


def free_ports_env(home, db_prefix, channel_prefix, settings=None):
    """The settings of a platform to install in ``home``: free loopback
    ports, its own database prefix and Redis channel, ``settings`` on
    top (e.g. another MICROFLACK_IP, DB_HOST and DB_PORT, REDIS), nothing
    of a host installation's."""
    env = {
        **clean_environ(),
        'MF_HOME': str(home),
        'MICROFLACK_IP': LOOPBACK,
        'LB_PORT': str(free_port()),
        'LB_HTTPS_PORT': str(free_port()),
        'ETCD_PORT': str(free_port_pair()),
        'LOGS_PORT': str(free_port()),
        'MF_DB_PREFIX': db_prefix,
        # Its own pushes channel: other platforms may share the Redis.
        'REDIS_CHANNEL': f'{channel_prefix}-{os.getpid()}-{free_port()}',
        # Every request of a test or benchmark comes from one address and
        # a few tokens: no rate limits (tests/test_lb_config.py tests them).
        **NO_RATE_LIMITS,
        # Clients of the tests pick source addresses in 127.0.0.2-127 (the
        # socketio backend balances by source): like the services, they
        # are not sent to HTTPS. 127.0.0.200 stands for a browser elsewhere.
        'LB_INTERNAL_SOURCES': '127.0.0.0/25',
        **(settings or {}),
    }
    env['PATH'] = f"{ADMIN / 'bin'}:{os.environ['PATH']}"
    return env


class PrivatePlatform:
    """A platform in ``home`` with the settings ``env`` (the environment
    its admin scripts run with)."""

    def __init__(self, home, env):
        self.home = Path(home)
        self.env = env
        # Where the platform serves and its instances register.
        self.address = env.get('MICROFLACK_IP', LOOPBACK)
        self.lb = f"http://{self.address}:{env['LB_PORT']}"
        # HTTPS (none when LB_HTTPS_PORT is 0), with the certificate of the
        # platform's own CA (install/make-tls.sh).
        https_port = env.get('LB_HTTPS_PORT', '443')
        self.lb_https = None if https_port == '0' \
            else f'https://{self.address}:{https_port}'
        self.ca_cert = self.home / 'tls' / 'ca.crt'
        self.etcd = f"http://{env.get('ETCD_BIND', '127.0.0.1')}:{env['ETCD_PORT']}"
        self._etcd_client = None
        self.logs = f"http://{self.address}:{env['LOGS_PORT']}/logs"
        self.http = http_session()

    @classmethod
    def on_free_ports(cls, home, db_prefix, channel_prefix, settings=None):
        """A platform to install in ``home``: free loopback ports, its own
        database prefix and Redis channel, ``settings`` on top."""
        return cls(home, free_ports_env(home, db_prefix, channel_prefix,
                                        settings))

    @classmethod
    def existing(cls, home):
        """The platform installed in ``home``, with the settings its
        ``microflack.conf`` saved."""
        settings = {}
        for line in (Path(home) / 'microflack.conf').read_text().splitlines():
            name, _, value = line.partition('=')
            if value.startswith('${') and ':-' in value:
                settings[name] = value.split(':-', 1)[1].rstrip('}')
        settings.pop('ETCD', None)
        env = {**clean_environ(), 'LB_PORT': '80', 'LB_HTTPS_PORT': '443',
               'ETCD_PORT': '2379',
               'LOGS_PORT': '1095', 'MF_HOME': str(home), **settings}
        env['PATH'] = f"{ADMIN / 'bin'}:{os.environ['PATH']}"
        return cls(home, env)

    def install(self, timeout=900):
        """``setup-all-in-one.sh`` with this platform's settings."""
        return self.run('install/setup-all-in-one.sh', timeout=timeout)

    def remove(self):
        """Stop everything the platform runs (its data stays in home)."""
        return self.run('install/stop-all.sh', check=False)

    def run(self, *args, check=True, timeout=600, input=None, env=None):
        """Run an admin script (``bin/<name>``, or a path below
        microflack_admin) with ``env`` added to the platform's settings;
        ScriptFailed when it fails and ``check``."""
        command = [str(ADMIN / args[0]) if '/' in args[0]
                   else str(ADMIN / 'bin' / args[0]), *args[1:]]
        result = subprocess.run(command, env={**self.env, **(env or {})},
                                capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise ScriptFailed(f'{args} failed ({result.returncode}):\n'
                               f'{result.stdout}\n{result.stderr}')
        return result

    def mariadb(self, *args):
        """The mariadb client command with ``args`` as the platform's
        database administrator (its DB_ADMIN_CNF)."""
        return mariadb_admin(*args, admin_cnf=self.env.get('DB_ADMIN_CNF'),
                             host=self.env.get('DB_HOST'),
                             port=self.env.get('DB_PORT'))

    def secret(self, name):
        for file in ('secrets.env', 'db-passwords.env'):
            path = self.home / 'secrets' / file
            for line in path.read_text().splitlines():
                key, _, value = line.partition('=')
                if key == name:
                    return value
        raise KeyError(name)

    # -- the registry ----------------------------------------------------

    @property
    def etcd_client(self):
        """A client of the platform's etcd (v3)."""
        if self._etcd_client is None:
            self._etcd_client = EtcdClient(self.etcd, timeout=5)
        return self._etcd_client

    def registry(self, key='/services'):
        """The tree below ``key`` as nested dicts ({} when absent)."""
        prefix = key.rstrip('/') + '/'
        return self.etcd_client.get_prefix(prefix).tree(prefix)

    def etcd_put(self, key, value, ttl=None):
        """Write a key; with ``ttl``, on a lease of its own."""
        if ttl:
            self.etcd_client.put_expiring(key, value, ttl)
        else:
            self.etcd_client.put(key, value)

    def etcd_delete(self, key, recursive=False):
        """Delete a key, or with ``recursive`` every key below key/."""
        if recursive:
            self.etcd_client.delete_prefix(key.rstrip('/') + '/')
        else:
            self.etcd_client.delete(key)

    def instances(self, service):
        """The names of the service's registered instances, sorted."""
        return sorted(self.registry(f'/services/{service}/upstream') or {})

    @staticmethod
    def instance_address(record):
        """The ``host:port`` an instance registered (its record's ADDRESS;
        older records, all on loopback, have only a PORT)."""
        return record.get('ADDRESS') or f"{LOOPBACK}:{record['PORT']}"

    def instance_records(self, service=None):
        """{instance: record} of the instances the scripts recorded
        ($MF_HOME/run/instances/*.info), of one service or all."""
        found = {}
        for path in (self.home / 'run' / 'instances').glob('*.info'):
            record = dict(line.split('=', 1) for line in
                          path.read_text().splitlines() if '=' in line)
            if service is None or record.get('SERVICE') == service:
                found[path.stem] = record
        return found

    # -- the load balancer -----------------------------------------------

    def stats(self):
        """HAProxy's per-server rows: {(backend, server): row}."""
        auth = (self.secret('STATS_USER'), self.secret('STATS_PASSWORD'))
        # A connection of its own: an idle kept-alive one may still belong
        # to the load balancer's previous worker (after a reload, that one
        # answers one more request with its old configuration).
        with requests.Session() as fresh:
            fresh.trust_env = False
            response = fresh.get(f'{self.lb}/stats;csv', auth=auth,
                                 timeout=5)
        response.raise_for_status()
        lines = response.text.lstrip('# ').splitlines()
        header = lines[0].split(',')
        rows = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(','), strict=False))
            rows[(row['pxname'], row['svname'])] = row
        return rows

    def server_status(self, backend, server):
        """A server's status at the load balancer (UP, DOWN, MAINT, ...),
        None when it does not list it."""
        row = self.stats().get((backend, server))
        return None if row is None else row['status']

    # -- waiting and users -----------------------------------------------

    def wait_for(self, predicate, timeout=10, interval=0.05, what='condition'):
        """``predicate``'s true value, or AssertionError naming ``what``."""
        value = wait_until(predicate, timeout, interval)
        if not value:
            raise AssertionError(f'{what} not met within {timeout} s')
        return value

    def table_ids(self, database, table):
        """The ids stored in a table of the platform's MariaDB (as the
        scripts administer it)."""
        command = mariadb_admin(
            '-N', '-e', f'SELECT id FROM `{database}`.`{table}`',
            admin_cnf=self.env.get('DB_ADMIN_CNF'),
            host=self.env.get('DB_HOST'), port=self.env.get('DB_PORT'))
        result = subprocess.run(command, capture_output=True, text=True,
                                check=True)
        return {int(line) for line in result.stdout.split()}

    def user_with_token(self, nickname, password='secret'):
        """A new user's token."""
        rv = self.http.post(f'{self.lb}/api/users', timeout=10,
                            json={'nickname': nickname, 'password': password})
        assert rv.status_code == 201, rv.text
        rv = self.http.post(f'{self.lb}/api/tokens', timeout=10,
                            auth=(nickname, password))
        assert rv.status_code == 200, rv.text
        return rv.json()['token']


class MixedLoad:
    """``clients`` threads, each with its own connection pool, sending a
    POST every ``post_every`` requests and GETs otherwise, through the load
    balancer, until stopped. Records every failure (an unexpected status
    or no answer) and the ids that POSTs created (their 201 bodies)."""

    def __init__(self, get, post, clients=8, post_every=3, pause=0.005):
        self.get = get
        self.post = post
        self.clients = clients
        self.post_every = post_every
        self.pause = pause
        self.requests = 0
        self.failures = []
        self.created = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,),
                                          daemon=True)
                         for n in range(clients)]

    def _run(self, number):
        session = requests.Session()
        session.trust_env = False
        count = 0
        while not self._stop.is_set():
            count += 1
            posting = (count + number) % self.post_every == 0
            expected = 201 if posting else 200
            try:
                response = (self.post if posting else self.get)(session)
                status = response.status_code
            except requests.RequestException as exc:
                response, status = None, repr(exc)
            with self._lock:
                self.requests += 1
                if status != expected:
                    # When, to find it in the load balancer's log.
                    self.failures.append(
                        ('POST' if posting else 'GET', status,
                         response.text[:200] if response is not None else '',
                         time.strftime('%H:%M:%S')))
                elif posting:
                    self.created.append(response.json()['id'])
            time.sleep(self.pause)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
