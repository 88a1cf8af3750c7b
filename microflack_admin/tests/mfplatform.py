"""A whole MicroFlack platform installed by setup-all-in-one.sh into a
private MF_HOME, on free loopback ports, for the platform tests."""
import base64
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from microflack_common.testing import free_port, free_port_pair, wait_until

ADMIN = Path(__file__).resolve().parent.parent
ROOT = ADMIN.parent
# Two checkouts may run their tests on one MariaDB at once: each names its
# databases and users with a tag of its own, and drops only those.
CHECKOUT_TAG = hashlib.sha256(str(ROOT).encode()).hexdigest()[:6]


def clean_environ():
    """The caller's environment variables that a test may pass on (those
    that tests/passenv names: the user, proxies, the test command's own
    settings): none of a host installation's settings, so that a setting
    a test does not give comes from the project's defaults."""
    patterns = []
    for line in (ADMIN / 'tests' / 'passenv').read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            patterns.append(line)
    return {name: value for name, value in os.environ.items()
            if any(fnmatch.fnmatchcase(name, pattern)
                   for pattern in patterns)}


def checkout_db_prefix(name):
    """The database prefix ``name`` of this checkout's test platforms."""
    return f'{name}{CHECKOUT_TAG}_'


class Platform:
    def __init__(self, home, settings=None):
        self.home = Path(home)
        self.env = {
            **clean_environ(),
            'MF_HOME': str(self.home),
            'MICROFLACK_IP': '127.0.0.1',
            'LB_PORT': str(free_port()),
            'ETCD_PORT': str(free_port_pair()),
            'LOGS_PORT': str(free_port()),
            'MF_DB_PREFIX': checkout_db_prefix('mftest'),
            # Its own pushes channel: other platforms may share the Redis.
            'REDIS_CHANNEL': f'mftest-{os.getpid()}-{free_port()}',
            'REDIS': os.environ.get('TEST_REDIS', '127.0.0.1:6379'),
            **(settings or {}),
        }
        if os.environ.get('MF_TEST_WHEELHOUSE'):
            # The test command's wheelhouse: no second download.
            self.env['WHEELHOUSE'] = os.environ['MF_TEST_WHEELHOUSE']
        self.env['PATH'] = f"{ADMIN / 'bin'}:{os.environ['PATH']}"
        self.lb = f"http://127.0.0.1:{self.env['LB_PORT']}"
        self.etcd = f"http://127.0.0.1:{self.env['ETCD_PORT']}"
        self.logs = f"http://127.0.0.1:{self.env['LOGS_PORT']}/logs"
        self.http = requests.Session()
        self.http.trust_env = False
        # As browsers do: an idempotent request sent on a kept-alive
        # connection that the load balancer's previous worker closed at
        # that moment (after a reload) is sent once more, on a new one.
        self.http.mount('http://', HTTPAdapter(max_retries=Retry(
            total=1, connect=1, read=1, status=0, redirect=0,
            allowed_methods=frozenset({'GET', 'HEAD', 'OPTIONS'}))))

    def run(self, *args, check=True, timeout=600, input=None, env=None):
        """Run an admin script (``env``: settings added to the
        platform's); returns the CompletedProcess."""
        command = [str(ADMIN / args[0]) if '/' in args[0]
                   else str(ADMIN / 'bin' / args[0]), *args[1:]]
        result = subprocess.run(command, env={**self.env, **(env or {})},
                                capture_output=True,
                                text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(
                f'{args} failed ({result.returncode}):\n{result.stdout}\n'
                f'{result.stderr}')
        return result

    def secret(self, name):
        for file in ('secrets.env', 'db-passwords.env'):
            path = self.home / 'secrets' / file
            for line in path.read_text().splitlines():
                key, _, value = line.partition('=')
                if key == name:
                    return value
        raise KeyError(name)

    def registry(self, key='/services'):
        response = self.http.get(f'{self.etcd}/v2/keys{key}',
                                 params={'recursive': 'true'}, timeout=5)
        if response.status_code == 404:
            return {}
        return _tree(response.json()['node'])

    def etcd_put(self, key, value, ttl=None):
        data = {'value': value}
        if ttl:
            data['ttl'] = ttl
        self.http.put(f'{self.etcd}/v2/keys{key}', data=data,
                      timeout=5).raise_for_status()

    def etcd_delete(self, key, recursive=False):
        params = {'recursive': 'true', 'dir': 'true'} if recursive else {}
        self.http.delete(f'{self.etcd}/v2/keys{key}', params=params, timeout=5)

    def instances(self, service):
        return sorted(self.registry(f'/services/{service}/upstream') or {})

    def stats(self):
        """HAProxy's per-server rows: {(backend, server): row}."""
        auth = (self.secret('STATS_USER'), self.secret('STATS_PASSWORD'))
        # A connection of its own: an idle kept-alive one may still belong
        # to the load balancer's previous worker (after a reload, that one
        # answers one more request with its old configuration).
        with requests.Session() as fresh:
            fresh.trust_env = False
            response = fresh.get(f'{self.lb}/stats;csv', auth=auth, timeout=5)
        response.raise_for_status()
        lines = response.text.lstrip('# ').splitlines()
        header = lines[0].split(',')
        rows = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(','), strict=False))
            rows[(row['pxname'], row['svname'])] = row
        return rows

    def wait_for(self, predicate, timeout=10, interval=0.05, what='condition'):
        """``predicate``'s true value, or AssertionError naming ``what``."""
        value = wait_until(predicate, timeout, interval)
        if not value:
            raise AssertionError(f'{what} not met within {timeout} s')
        return value

    def user_with_token(self, nickname, password='secret'):
        rv = self.http.post(f'{self.lb}/api/users', timeout=10,
                            json={'nickname': nickname, 'password': password})
        assert rv.status_code == 201, rv.text
        rv = self.http.post(f'{self.lb}/api/tokens', timeout=10,
                            auth=(nickname, password))
        assert rv.status_code == 200, rv.text
        return rv.json()['token']


def api_flow(platform, nickname):
    """Register, log in, list users, post a message, read it back, then
    revoke the token: refused by every service within 5 s."""
    lb, http = platform.lb, platform.http
    token = platform.user_with_token(nickname)
    auth = {'Authorization': f'Bearer {token}'}
    rv = http.get(f'{lb}/api/users', headers=auth, timeout=10)
    assert rv.status_code == 200
    assert nickname in [u['nickname'] for u in rv.json()['users']]
    rv = http.post(f'{lb}/api/messages', headers=auth, timeout=10,
                   json={'source': 'hello *world*!'})
    assert rv.status_code == 201, rv.text
    assert rv.headers['Location'].endswith(f"/api/messages/{rv.json()['id']}")
    assert rv.json()['html'] == 'hello <em>world</em>!'
    rv = http.get(f'{lb}/api/messages', timeout=10)
    assert rv.json()['messages'][-1]['source'] == 'hello *world*!'
    rv = http.get(f'{lb}/api/tokens', headers=auth, timeout=10)
    assert rv.status_code == 200
    rv = http.delete(f'{lb}/api/tokens', headers=auth, timeout=10)
    assert rv.status_code == 204

    def refused_everywhere():
        return all(http.request(method, f'{lb}{path}', headers=auth,
                                timeout=10).status_code == 401
                   for method, path in [('GET', '/api/tokens'),
                                        ('PUT', '/api/users/me'),
                                        ('POST', '/api/messages')])
    platform.wait_for(refused_everywhere, timeout=5, interval=0.2,
                      what='revocation seen by every service')


def existing_platform(home):
    """A platform already installed in ``home`` (its microflack.conf), for
    iterating on tests without installing one each run."""
    settings = {}
    for line in (Path(home) / 'microflack.conf').read_text().splitlines():
        name, _, value = line.partition('=')
        if value.startswith('${') and ':-' in value:
            settings[name] = value.split(':-', 1)[1].rstrip('}')
    settings.pop('ETCD', None)
    return Platform(home, settings)


def _tree(node):
    if not node.get('dir'):
        return node.get('value')
    return {child['key'].rsplit('/', 1)[-1]: _tree(child)
            for child in node.get('nodes', [])}


def basic(user, password):
    raw = f'{user}:{password}'.encode()
    return 'Basic ' + base64.b64encode(raw).decode()


class SteadyClient:
    """Sends requests in a loop from a thread, counting the failures
    (anything but the expected status, or no answer), until stopped."""

    def __init__(self, send, expected=200, pause=0.01):
        self.send = send
        self.expected = expected
        self.pause = pause
        self.count = 0
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        session = requests.Session()
        session.trust_env = False
        while not self._stop.is_set():
            try:
                status = self.send(session).status_code
            except requests.RequestException as exc:
                status = repr(exc)
            self.count += 1
            if status != self.expected:
                self.failures.append(status)
            time.sleep(self.pause)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def drop_test_databases(prefix=None):
    prefix = prefix or checkout_db_prefix('mftest')
    if not shutil.which('mariadb'):
        return
    listing = subprocess.run(
        ['mariadb', '-uroot', '-N', '-e', 'SHOW DATABASES'],
        capture_output=True, text=True)
    statements = [f'DROP DATABASE `{name}`;' for name in
                  listing.stdout.split() if name.startswith(prefix)]
    users = subprocess.run(
        ['mariadb', '-uroot', '-N', '-e',
         f"SELECT CONCAT(\"'\", User, \"'@'\", Host, \"'\") FROM mysql.user "
         f"WHERE User LIKE '{prefix}%'"],
        capture_output=True, text=True)
    statements += [f'DROP USER {user};' for user in users.stdout.split()]
    if statements:
        subprocess.run(['mariadb', '-uroot', '-e', ' '.join(statements)],
                       check=True)


def dumps(value):
    return json.dumps(value, indent=1, sort_keys=True)


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


def table_ids(database, table):
    """The ids stored in a table of a MariaDB database (as root)."""
    result = subprocess.run(
        ['mariadb', '-uroot', '-N', '-e', f'SELECT id FROM `{database}`.`{table}`'],
        capture_output=True, text=True, check=True)
    return {int(line) for line in result.stdout.split()}
