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


# -- every token of a user at once (issue 19 finding 2, issue 20 item 9) --

def claims(user_id, iat=None):
    found = {'user_id': user_id, 'exp': time.time() + 3600}
    if iat is not None:
        found['iat'] = iat
    return found


def test_revoke_user_writes_one_key_lasting_a_token_lifetime():
    etcd = FakeEtcd()
    before = time.time()
    RevocationList(etcd).revoke_user(7, 3600)
    since = float(etcd.get_value('/revoked-users/7'))
    assert before <= since <= time.time() + 0.001
    assert 3600 < etcd.ttl('/revoked-users/7') <= 3600 + 6


def test_revoke_user_ends_the_tokens_issued_before_only():
    etcd = FakeEtcd()
    revocations = RevocationList(etcd)
    earlier = time.time() - 1
    revocations.revoke_user(7, 3600)
    later = time.time() + 0.002
    assert revocations.is_revoked('tok', claims(7, earlier))
    # Issued before tokens said when: older than any revocation.
    assert revocations.is_revoked('tok', claims(7))
    assert not revocations.is_revoked('tok', claims(7, later))
    assert not revocations.is_revoked('tok', claims(8, earlier))
    # Without its claims only the token's own revocation counts.
    assert not revocations.is_revoked('tok')


def test_a_token_issued_in_the_same_millisecond_ends_too(monkeypatch):
    """Tokens carry iat rounded down to the millisecond; a revocation
    rounds up, so a token of the revocation's millisecond is ended."""
    from microflack_common import revocation
    etcd = FakeEtcd()
    monkeypatch.setattr(revocation.time, 'time', lambda: 1000.0004)
    RevocationList(etcd).revoke_user(7, 3600)
    monkeypatch.undo()
    assert etcd.get_value('/revoked-users/7') == '1000.001'
    assert RevocationList(etcd).is_revoked('tok', claims(7, 1000.000))
    assert not RevocationList(etcd).is_revoked('tok', claims(7, 1000.001))


def test_a_user_revocation_made_elsewhere_is_seen_after_the_cache():
    etcd, clock = FakeEtcd(), Clock()
    revocations = RevocationList(etcd, cache_seconds=2, clock=clock)
    token_claims = claims(7, time.time() - 1)
    assert not revocations.is_revoked('tok', token_claims)
    RevocationList(etcd).revoke_user(7, 3600)
    assert not revocations.is_revoked('tok', token_claims)     # cached
    clock.now += 2.5
    assert revocations.is_revoked('tok', token_claims)


def test_a_hand_written_user_revocation_ends_every_token():
    etcd = FakeEtcd()
    etcd.put('/revoked-users/7', '')
    assert RevocationList(etcd).is_revoked('tok', claims(7, time.time()))
