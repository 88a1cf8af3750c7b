"""EtcdClient and Registration against a real etcd on loopback."""
import time

import pytest

from microflack_common.etcd_client import (
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdTimeout,
)
from microflack_common.registration import (
    Registration,
    RegistrationError,
    registration_from_config,
)


@pytest.fixture
def etcd(etcd_url):
    client = EtcdClient(etcd_url)
    client.delete_prefix('/services/')
    return client


def test_put_get_delete(etcd):
    etcd.put('/services/x/location', '/api/x')
    assert etcd.get_value('/services/x/location') == '/api/x'
    assert etcd.delete('/services/x/location')
    assert not etcd.delete('/services/x/location')
    assert etcd.get('/services/x/location') is None
    assert etcd.get_value('/services/x/location', 'none') == 'none'


def test_prefix_tree_and_revision(etcd):
    etcd.put('/services/a/location', '/api/a')
    revision = etcd.put('/services/a/upstream/a1', '127.0.0.1:1')
    found = etcd.get_prefix('/services/')
    assert found.revision == revision == etcd.revision()
    assert found.tree('/services/') == {
        'a': {'location': '/api/a', 'upstream': {'a1': '127.0.0.1:1'}}}
    # A prefix selects its own keys only, not a sibling's.
    etcd.put('/services-other', 'x')
    assert [kv.key for kv in etcd.get_prefix('/services/').kvs] == [
        '/services/a/location', '/services/a/upstream/a1']
    assert etcd.delete_prefix('/services/') == 2
    assert etcd.get_value('/services-other') == 'x'
    etcd.delete('/services-other')


def test_lease_keep_alive_and_revoke(etcd):
    lease = etcd.put_expiring('/services/t/upstream/i', 'h:1', 2)
    assert etcd.get('/services/t/upstream/i').lease == lease
    assert lease in etcd.leases()
    assert 0 < etcd.time_to_live(lease) <= 2
    time.sleep(1.2)
    assert etcd.keep_alive(lease) == 2
    time.sleep(1.2)
    assert etcd.get_value('/services/t/upstream/i') == 'h:1'
    assert etcd.revoke(lease)
    assert etcd.get('/services/t/upstream/i') is None
    assert not etcd.revoke(lease)
    assert etcd.keep_alive(lease) == 0
    assert etcd.time_to_live(lease) == -1
    with pytest.raises(EtcdLeaseNotFound):
        etcd.put('/services/t/upstream/i', 'h:1', lease=lease)


def test_key_expires_with_its_lease(etcd):
    etcd.put_expiring('/services/e/upstream/i', 'h:1', 1)
    deadline = time.monotonic() + 5
    while etcd.get('/services/e/upstream/i') is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_watch_from_a_revision_sees_every_change(etcd):
    start = etcd.revision() + 1
    etcd.put('/services/w/location', '/w')
    etcd.put('/services/w/upstream/w1', 'h:1')
    etcd.delete('/services/w/upstream/w1')
    # Made before the watch started, yet seen: it starts from a revision.
    seen = []
    while len(seen) < 3:
        events = etcd.watch_prefix('/services/', start, timeout=2)
        seen += [(e.type, e.kv.key) for e in events]
        start = events[-1].kv.mod_revision + 1
    assert seen == [('PUT', '/services/w/location'),
                    ('PUT', '/services/w/upstream/w1'),
                    ('DELETE', '/services/w/upstream/w1')]
    began = time.monotonic()
    with pytest.raises(EtcdTimeout):
        etcd.watch_prefix('/services/', start, timeout=0.5)
    assert time.monotonic() - began < 2


def test_watch_from_a_compacted_revision_says_so(etcd):
    start = etcd.revision() + 1
    etcd.put('/services/c/location', '/c')
    etcd.put('/services/c/location', '/c2')
    etcd.compact(etcd.revision())
    with pytest.raises(EtcdCompacted) as caught:
        etcd.watch_prefix('/services/', start, timeout=2)
    assert caught.value.compact_revision == etcd.revision()


def test_the_v2_api_is_off(etcd_url):
    """The tests' etcd is started as a supported etcd runs: v3 only."""
    import urllib3
    response = urllib3.PoolManager(retries=False).request(
        'GET', etcd_url + '/v2/keys/', timeout=2)
    assert response.status == 404


def test_fails_over_to_next_endpoint(etcd_url):
    from microflack_common.testing import free_port
    dead = f'http://127.0.0.1:{free_port()}'
    client = EtcdClient(f'{dead},{etcd_url}')
    client.put('/services/f/location', '/f')
    assert client.get_value('/services/f/location') == '/f'


def test_passes_over_a_member_that_does_not_answer(etcd_url):
    """A member that accepts connections but never answers (a hung
    process): each call, the watch included, goes on to the next member
    after the call's time limit."""
    import socket
    hung = socket.socket()
    hung.bind(('127.0.0.1', 0))
    hung.listen(16)             # accepted by the kernel, never answered
    try:
        client = EtcdClient(f'http://127.0.0.1:{hung.getsockname()[1]},'
                            f'{etcd_url}', timeout=0.5)
        began = time.monotonic()
        client.put('/services/h/location', '/h')
        assert client.get_value('/services/h/location') == '/h'
        assert time.monotonic() - began < 2
        # The member that answered is asked first from then on.
        assert client._preferred == 1
        start = client.revision() + 1
        client.put('/services/h/location', '/h2')
        # A watch, too, leaves the hung member for the next (made to ask
        # the hung one first again).
        client._preferred = 0
        began = time.monotonic()
        events = client.watch_prefix('/services/', start, timeout=5)
        assert [e.kv.value for e in events] == ['/h2']
        assert time.monotonic() - began < 2
    finally:
        hung.close()


def test_unreachable_raises_etcd_error():
    from microflack_common.testing import free_port
    client = EtcdClient(f'http://127.0.0.1:{free_port()}', timeout=0.5)
    with pytest.raises(EtcdError):
        client.get('/services/x')


def test_registration_lifecycle(etcd):
    registration = Registration(
        etcd, 'users', 'users_v1_a', '127.0.0.1:5001', '/api/users',
        backend_options={'balance': 'source'}, ttl=3, refresh=1)
    registration.start()
    deadline = time.monotonic() + 5
    while etcd.get_value(registration.upstream_key) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    tree = etcd.get_prefix('/services/users/').tree('/services/users/')
    assert tree == {'location': '/api/users',
                    'backend': {'balance': 'source'},
                    'upstream': {'users_v1_a': '127.0.0.1:5001'}}
    lease = etcd.get(registration.upstream_key).lease
    assert 0 < etcd.time_to_live(lease) <= 3
    # Kept alive past its TTL by the refreshes.
    time.sleep(4)
    assert etcd.get_value(registration.upstream_key) == '127.0.0.1:5001'
    # Re-registers when the key vanished (e.g. etcd lost it).
    etcd.delete(registration.upstream_key)
    time.sleep(1.5)
    assert etcd.get_value(registration.upstream_key) == '127.0.0.1:5001'
    registration.stop()
    assert etcd.get_value(registration.upstream_key) is None
    assert etcd.get_value('/services/users/location') == '/api/users'


@pytest.mark.parametrize('kwargs', [
    {'name': 'bad name'}, {'instance': 'x/../y'}, {'address': 'nohost'},
    {'address': 'h:port'}, {'location': 'api'}, {'ttl': 5, 'refresh': 5},
    {'name': 'Users'}, {'name': 'a' * 33}, {'address': '127.0.0.1:0'},
    {'address': '127.0.0.1:65536'}, {'address': '127.0.0.1:1\n'},
    {'location': '/a b'},
    # An instance named after a tag with "+" (mfbuild refuses it now).
    {'instance': 'tokens_v1.1.0+rc1_host_8000'}, {'instance': 'a' * 64},
])
def test_registration_rejects_bad_values(etcd, kwargs):
    values = {'name': 'users', 'instance': 'users_1', 'address': '127.0.0.1:1',
                  'location': '/api/users', 'ttl': 50, 'refresh': 15}
    values.update(kwargs)
    with pytest.raises(RegistrationError):
        Registration(etcd, **values)


def test_backend_options_from_the_config():
    from microflack_common.config import Config
    from microflack_common.registration import backend_options
    # Four per thread of gunicorn's 2 workers x 4, unless the environment
    # says.
    assert Config.LB_SERVER_MAXCONN == 32
    assert Config.LB_TIMEOUT_SERVER == 10
    assert backend_options({'LB_ALGORITHM': 'roundrobin',
                            'LB_SERVER_MAXCONN': 8,
                            'LB_TIMEOUT_SERVER': 10}) == {
        'balance': 'roundrobin', 'maxconn': '8', 'timeout_server': '10'}
    assert backend_options({'LB_ALGORITHM': 'source', 'LB_SERVER_MAXCONN': 0,
                            'LB_TIMEOUT_SERVER': 60}) == {
        'balance': 'source', 'timeout_server': '60'}


def test_registration_from_config_requires_address(etcd):
    with pytest.raises(RegistrationError, match='SERVICE_ADDRESS'):
        registration_from_config(etcd, {'SERVICE_ADDRESS': None})


def test_registers_a_moment_after_etcd_answers_again(fake_etcd):
    """While etcd is down the instance keeps trying, often: it is in the
    registry well under a second after etcd answers (it tried every 2 s)."""
    fake_etcd.down = True
    registration = Registration(
        fake_etcd, 'users', 'users_1', '127.0.0.1:5001', '/api/users')
    registration.start()
    try:
        time.sleep(1.1)
        assert registration.upstream_key not in fake_etcd.keys
        fake_etcd.down = False
        back = time.monotonic()
        while registration.upstream_key not in fake_etcd.keys:
            assert time.monotonic() - back < 0.5, 'not registered again'
            time.sleep(0.01)
    finally:
        registration.stop()


def test_a_registration_outlives_an_etcd_outage_longer_than_its_ttl(
        tmp_path):
    """A real etcd stopped for longer than the lease's TTL: etcd keeps the
    lease across its restart (with its whole TTL again), so the instance
    is registered all along once etcd answers, and stays (with etcd's v2
    TTLs, every registration expired at once)."""
    from microflack_common.testing import EtcdServer
    server = EtcdServer(tmp_path / 'etcd').start()
    etcd = EtcdClient(server.url, timeout=0.5)
    registration = Registration(
        etcd, 'users', 'users_1', '127.0.0.1:5001', '/api/users',
        ttl=4, refresh=3)
    registration.start()
    try:
        deadline = time.monotonic() + 5
        while etcd.get_value(registration.upstream_key) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.stop()
        time.sleep(4.5)
        server.start()
        answered = time.monotonic()
        missing_after = []
        while time.monotonic() - answered < 4:
            if etcd.get_value(registration.upstream_key) is None:
                missing_after.append(round(time.monotonic() - answered, 2))
            time.sleep(0.05)
        assert missing_after == []
    finally:
        registration.stop()
        server.stop()


# -- the revocation mirror (issue 15, finding 8) ------------------------

def revoked_soon(revocations, token, timeout=2):
    deadline = time.monotonic() + timeout
    while not revocations.is_revoked(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_mirror_sees_a_revocation_made_elsewhere(etcd_url):
    """Two processes' lists: one revokes, the other refuses the token as
    soon as etcd tells its watch, without asking etcd per token."""
    from microflack_common.revocation import RevocationList
    here = RevocationList(EtcdClient(etcd_url), mirror=True)
    there = RevocationList(EtcdClient(etcd_url), mirror=True)
    assert there.mirror.wait_synced(5)
    token = f'tok-{time.time_ns()}'
    assert not there.is_revoked(token)
    here.revoke(token, time.time() + 60)
    assert revoked_soon(there, token)
    there.etcd = None       # a lookup that asked etcd would fail now
    assert there.is_revoked(token) and not there.is_revoked(token + 'x')
    here.mirror.stop()
    there.mirror.stop()


def test_revocations_hold_through_an_etcd_outage(tmp_path):
    """Tokens revoked before etcd stops stay refused while it is down, by
    a service that never looked them up; the mirror follows revocations
    again once etcd is back."""
    from microflack_common.revocation import RevocationList
    from microflack_common.testing import EtcdServer
    server = EtcdServer(tmp_path / 'etcd').start()
    tokens_service = RevocationList(EtcdClient(server.url, timeout=0.5),
                                    mirror=False)
    messages = RevocationList(EtcdClient(server.url, timeout=0.5),
                              cache_seconds=0, mirror=True)
    try:
        assert messages.mirror.wait_synced(5)
        tokens_service.revoke('revoked-before', time.time() + 60)
        time.sleep(0.5)         # the watch's news arrives
        server.stop()
        assert messages.is_revoked('revoked-before')
        assert not messages.is_revoked('never-revoked')
        server.start()
        tokens_service.revoke('revoked-after', time.time() + 60)
        assert revoked_soon(messages, 'revoked-after', timeout=5)
        assert messages.is_revoked('revoked-before')
    finally:
        messages.mirror.stop()
        server.stop()


def test_the_mirror_tells_its_listeners_of_new_revocations(etcd_url):
    """What the socketio instances follow to log a user's pages out at
    once: every revocation made after the listener was added."""
    from microflack_common.revocation import RevocationList
    here = RevocationList(EtcdClient(etcd_url), mirror=True)
    there = RevocationList(EtcdClient(etcd_url), mirror=True)
    heard = []
    there.mirror.add_listener(lambda key, value: heard.append((key, value)))
    there.mirror.add_listener(lambda key, value: 1 / 0)   # does not stop it
    assert there.mirror.wait_synced(5)
    user_id = time.time_ns() % 2**31
    here.revoke_user(user_id, 60)
    deadline = time.monotonic() + 5
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    [(key, value)] = heard
    assert key == f'/revoked-users/{user_id}'
    assert abs(float(value) - time.time()) < 5
    assert there.is_revoked('tok', {'user_id': user_id, 'iat': 0})
    here.mirror.stop()
    there.mirror.stop()
