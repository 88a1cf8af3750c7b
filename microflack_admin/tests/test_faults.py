"""Faults injected into a running platform under steady load (issue 15).

The platform here is private to this module (its own ports, MF_HOME and
databases), so that a fault cannot disturb the other tests; each test
leaves it healthy for the next. Each fault is bounded in time.
"""
import json
import subprocess
import threading
import time
import uuid

import pytest
from mfplatform import MixedLoad, Platform, drop_test_databases, table_ids

DB_PREFIX = 'mffault_'


@pytest.fixture(scope='module')
def faulty(tmp_path_factory):
    drop_test_databases(DB_PREFIX)
    platform = Platform(tmp_path_factory.mktemp('mffaults'),
                        {'MF_DB_PREFIX': DB_PREFIX})
    try:
        platform.run('install/setup-all-in-one.sh', timeout=900)
        yield platform
    finally:
        platform.run('install/stop-all.sh', check=False)
        drop_test_databases(DB_PREFIX)


def bearer(token):
    return {'Authorization': f'Bearer {token}'}


def kill_database_connections(prefix):
    """As an operator's KILL (or a network fault) would: end every
    connection of the platform's services to MariaDB. Returns how many."""
    listing = subprocess.run(
        ['mariadb', '-uroot', '-N', '-e',
         f"SELECT id FROM information_schema.processlist "
         f"WHERE db LIKE '{prefix}%'"],
        capture_output=True, text=True, check=True)
    ids = [int(line) for line in listing.stdout.split()]
    if ids:
        # A connection may be gone already: each KILL on its own.
        subprocess.run(['mariadb', '-uroot', '-f', '-e', ' '.join(
            f'KILL CONNECTION {connection_id};' for connection_id in ids)],
            capture_output=True, text=True)
    return len(ids)


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
            killed.append(kill_database_connections(DB_PREFIX))

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
