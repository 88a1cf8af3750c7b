import time

from microflack_common.revocation import RevocationList
from microflack_common.testing import FakeEtcd


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_revoke_writes_key_on_a_lease_ending_with_the_token():
    etcd = FakeEtcd()
    revocations = RevocationList(etcd)
    expires_at = time.time() + 100
    revocations.revoke('tok', expires_at)
    # The value is when the revocation ends; the lease ends then too.
    assert 0 <= float(etcd.get_value('/revoked-tokens/tok')) - expires_at \
        <= 6
    assert 100 <= etcd.ttl('/revoked-tokens/tok') <= 106
    assert revocations.is_revoked('tok')


def test_expired_token_gets_minimum_ttl():
    etcd = FakeEtcd()
    RevocationList(etcd).revoke('tok', time.time() - 100)
    assert etcd.ttl('/revoked-tokens/tok') > 0.5


def test_cache_limits_etcd_reads_and_expires():
    etcd, clock = FakeEtcd(), Clock()
    revocations = RevocationList(etcd, cache_seconds=2, clock=clock)
    assert not revocations.is_revoked('tok')
    assert not revocations.is_revoked('tok')
    assert len([c for c in etcd.calls if c[0] == 'get']) == 1
    # Revoked elsewhere: seen once the cache entry is older than 2 s.
    etcd.put('/revoked-tokens/tok', '')
    clock.now += 1
    assert not revocations.is_revoked('tok')
    clock.now += 1.5
    assert revocations.is_revoked('tok')


def test_etcd_down_keeps_last_known_answer():
    etcd, clock = FakeEtcd(), Clock()
    revocations = RevocationList(etcd, cache_seconds=1, clock=clock)
    etcd.put('/revoked-tokens/gone', '')
    assert revocations.is_revoked('gone')
    etcd.down = True
    clock.now += 5
    assert revocations.is_revoked('gone')       # still refused
    assert not revocations.is_revoked('other')   # judged on signature


def test_cache_is_bounded(monkeypatch):
    from microflack_common import revocation
    monkeypatch.setattr(revocation, 'CACHE_LIMIT', 10)
    etcd, clock = FakeEtcd(), Clock()
    revocations = RevocationList(etcd, cache_seconds=100, clock=clock)
    for i in range(25):
        revocations.is_revoked(f'tok{i}')
    assert len(revocations._cache) <= 10
