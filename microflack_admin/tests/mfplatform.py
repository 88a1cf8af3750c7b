"""A whole MicroFlack platform installed by setup-all-in-one.sh into a
private MF_HOME, on free loopback ports, for the platform tests."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time

import requests

# The one private-platform driver, shared with the benchmarks (the tools'
# folder is on sys.path: conftest.py).
from private_platform import ADMIN as ADMIN
from private_platform import ROOT, PrivatePlatform, free_ports_env, mariadb_admin
from private_platform import MixedLoad as MixedLoad
from private_platform import clean_environ as clean_environ

# Two checkouts may run their tests on one MariaDB at once: each names its
# databases and users with a tag of its own, and drops only those.
CHECKOUT_TAG = hashlib.sha256(str(ROOT).encode()).hexdigest()[:6]


def checkout_db_prefix(name):
    """The database prefix ``name`` of this checkout's test platforms."""
    return f'{name}{CHECKOUT_TAG}_'


class Platform(PrivatePlatform):
    """A test platform in ``home``: this checkout's databases, the test
    command's Redis and wheelhouse, ``settings`` on top."""

    def __init__(self, home, settings=None):
        test_settings = {'REDIS': os.environ.get('TEST_REDIS',
                                                 '127.0.0.1:6379'),
                         **mftest_database_settings()}
        if os.environ.get('MF_TEST_WHEELHOUSE'):
            # The test command's wheelhouse: no second download.
            test_settings['WHEELHOUSE'] = os.environ['MF_TEST_WHEELHOUSE']
        super().__init__(home, free_ports_env(
            home, checkout_db_prefix('mftest'), 'mftest',
            {**test_settings, **(settings or {})}))


# The test command's MariaDB (mftest: TEST_DB_HOST, TEST_DB_PORT,
# TEST_DB_ADMIN_CNF) as a platform's settings; unset: the defaults.
TEST_DATABASE_SETTINGS = {'TEST_DB_HOST': 'DB_HOST', 'TEST_DB_PORT': 'DB_PORT',
                          'TEST_DB_ADMIN_CNF': 'DB_ADMIN_CNF'}


def mftest_database_settings():
    return {setting: os.environ[name]
            for name, setting in TEST_DATABASE_SETTINGS.items()
            if os.environ.get(name)}


def mftest_mariadb(*args):
    """The mariadb client command with ``args``, as the administrator of
    the test command's MariaDB."""
    return mariadb_admin(*args,
                         admin_cnf=os.environ.get('TEST_DB_ADMIN_CNF'),
                         host=os.environ.get('TEST_DB_HOST'),
                         port=os.environ.get('TEST_DB_PORT'))


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
    return PrivatePlatform.existing(home)


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
    listing = subprocess.run(mftest_mariadb('-N', '-e', 'SHOW DATABASES'),
                             capture_output=True, text=True)
    statements = [f'DROP DATABASE `{name}`;' for name in
                  listing.stdout.split() if name.startswith(prefix)]
    users = subprocess.run(
        mftest_mariadb('-N', '-e',
                     f"SELECT CONCAT(\"'\", User, \"'@'\", Host, \"'\") "
                     f"FROM mysql.user WHERE User LIKE '{prefix}%'"),
        capture_output=True, text=True)
    statements += [f'DROP USER {user};' for user in users.stdout.split()]
    if statements:
        subprocess.run(mftest_mariadb('-e', ' '.join(statements)), check=True)


def dumps(value):
    return json.dumps(value, indent=1, sort_keys=True)


def table_ids(database, table):
    """The ids stored in a table of the test command's MariaDB (as its
    administrator)."""
    result = subprocess.run(
        mftest_mariadb('-N', '-e', f'SELECT id FROM `{database}`.`{table}`'),
        capture_output=True, text=True, check=True)
    return {int(line) for line in result.stdout.split()}
