"""The bridge that carries a v2 registry over to v3 while the instances
move (tools/registry_bridge.py), against a real etcd 3.4 serving both
APIs, as a platform of the previous version runs it."""
import time

import pytest
import urllib3
from registry_bridge import LEASE_TTL, Bridge, V2Registry, main

from conftest import Etcd
from microflack_common.etcd_client import EtcdClient


@pytest.fixture(scope='module')
def both_apis(tmp_path_factory):
    server = Etcd(tmp_path_factory.mktemp('etcd'), enable_v2=True).start()
    yield server
    server.stop()


@pytest.fixture
def v2(both_apis):
    http = urllib3.PoolManager(retries=False)

    def put(key, value, ttl=None):
        fields = {'value': value, **({'ttl': str(ttl)} if ttl else {})}
        response = http.request('PUT', f'{both_apis.url}/v2/keys{key}',
                                fields=fields, encode_multipart=False)
        assert response.status in (200, 201), response.data

    def delete(key):
        http.request('DELETE', f'{both_apis.url}/v2/keys{key}')
    put.delete = delete
    yield put
    http.request('DELETE', f'{both_apis.url}/v2/keys/services?recursive=true')
    http.request('DELETE',
                 f'{both_apis.url}/v2/keys/revoked-tokens?recursive=true')


@pytest.fixture
def etcd(both_apis):
    client = EtcdClient(both_apis.url)
    yield client
    client.delete_prefix('/services/')
    client.delete_prefix('/revoked-tokens/')


@pytest.fixture
def bridge(both_apis, etcd):
    bridge = Bridge(etcd, V2Registry([both_apis.url]))
    yield bridge
    bridge.finish()


def test_v2_registrations_are_routed_from_v3_until_they_leave(v2, etcd,
                                                             bridge):
    v2('/services/users/location', '/api/users')
    v2('/services/users/backend/balance', 'roundrobin')
    v2('/services/users/upstream/users_v1_a', '127.0.0.1:5001', ttl=50)
    v2('/services/users/upstream/users_v1_b', '127.0.0.1:5002', ttl=50)
    assert bridge.run_pass() == 2
    tree = etcd.get_prefix('/services/').tree('/services/')
    assert tree == {'users': {
        'location': '/api/users', 'backend': {'balance': 'roundrobin'},
        'upstream': {'users_v1_a': '127.0.0.1:5001',
                     'users_v1_b': '127.0.0.1:5002'}}}
    # On the bridge's lease, which it keeps alive.
    lease = etcd.get('/services/users/upstream/users_v1_a').lease
    assert lease and 0 < etcd.time_to_live(lease) <= LEASE_TTL
    # An old instance leaves v2 (it stopped): its v3 key goes too.
    v2.delete('/services/users/upstream/users_v1_b')
    assert bridge.run_pass() == 1
    assert etcd.get('/services/users/upstream/users_v1_b') is None
    # One retired through v3 (mfupgrade deleted its key) is not put back
    # while its v2 key lingers.
    etcd.delete('/services/users/upstream/users_v1_a')
    assert bridge.run_pass() == 1
    assert etcd.get('/services/users/upstream/users_v1_a') is None
    v2.delete('/services/users/upstream/users_v1_a')
    assert bridge.run_pass() == 0
    bridge.finish()
    assert etcd.time_to_live(lease) == -1
    # What v3 had of its own stays.
    assert etcd.get_value('/services/users/location') == '/api/users'


def test_a_v3_registration_is_left_alone(v2, etcd, bridge):
    """An instance of the new build registers in v3 itself: the bridge
    neither overwrites nor deletes its key."""
    own = etcd.put_expiring('/services/ui/upstream/ui_v2_a', '127.0.0.1:1',
                            50)
    v2('/services/ui/upstream/ui_v2_a', '127.0.0.1:9', ttl=50)
    bridge.run_pass()
    kv = etcd.get('/services/ui/upstream/ui_v2_a')
    assert (kv.value, kv.lease) == ('127.0.0.1:1', own)


def test_revoked_tokens_are_carried_with_their_remaining_life(v2, etcd,
                                                               bridge):
    v2('/revoked-tokens/tok-a', '', ttl=100)
    bridge.run_pass()
    kv = etcd.get('/revoked-tokens/tok-a')
    assert kv is not None
    assert 95 <= float(kv.value) - time.time() <= 101
    assert 95 <= etcd.time_to_live(kv.lease) <= 100
    # A token revoked in v2 later (by an old tokens instance) follows.
    v2('/revoked-tokens/tok-b', '', ttl=30)
    bridge.run_pass()
    assert etcd.get('/revoked-tokens/tok-b') is not None


def test_the_command_ends_when_nothing_is_left_in_v2(both_apis, v2,
                                                     tmp_path):
    v2('/revoked-tokens/tok-c', '', ttl=100)
    ready = tmp_path / 'ready'
    began = time.monotonic()
    assert main(['--etcd', both_apis.url, '--ready-file', str(ready)]) == 0
    assert time.monotonic() - began < 3
    assert ready.exists()
    assert EtcdClient(both_apis.url).get('/revoked-tokens/tok-c') is not None


def test_the_command_refuses_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(['--etcd', 'not a url'])
    assert exit_.value.code == 2
    assert 'malformed etcd URL' in capsys.readouterr().err
