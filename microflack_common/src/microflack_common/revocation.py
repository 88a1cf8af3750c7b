"""Revoked tokens, kept in etcd under ``/revoked-tokens/<token>`` until
they would have expired anyway.

Lookups are cached for a short time (``REVOCATION_CACHE_SECONDS``, 2 s by
default) so that a busy service reads etcd once per token and period, and a
revocation still reaches every service within that period. When etcd cannot
be reached the token is judged on its signature alone, with a warning.
"""
import logging
import threading
import time

from .etcd_client import EtcdError, EtcdKeyNotFound

logger = logging.getLogger(__name__)

REVOKED_PREFIX = '/revoked-tokens/'
# Kept past the token's expiry so clocks a little apart still agree.
EXPIRY_MARGIN = 5
WARNING_INTERVAL = 30
CACHE_LIMIT = 10000


class RevocationList:
    def __init__(self, etcd, cache_seconds=2.0, clock=time.monotonic):
        self.etcd = etcd
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache = {}            # token -> (revoked, checked_at)
        self._lock = threading.Lock()
        self._last_warning = None

    def revoke(self, token, expires_at):
        """Record a token as revoked until ``expires_at`` (+ a margin)."""
        ttl = max(1, int(expires_at - time.time()) + EXPIRY_MARGIN)
        self.etcd.set(REVOKED_PREFIX + token, '', ttl=ttl)
        with self._lock:
            self._cache[token] = (True, self.clock())

    def is_revoked(self, token):
        now = self.clock()
        with self._lock:
            cached = self._cache.get(token)
        if cached and now - cached[1] < self.cache_seconds:
            return cached[0]
        try:
            self.etcd.get(REVOKED_PREFIX + token)
            revoked = True
        except EtcdKeyNotFound:
            revoked = False
        except EtcdError as exc:
            self._warn(exc)
            revoked = cached[0] if cached else False
        with self._lock:
            if len(self._cache) >= CACHE_LIMIT:
                self._evict(now)
            self._cache[token] = (revoked, now)
        return revoked

    def _evict(self, now):
        stale = [token for token, (_, checked_at) in self._cache.items()
                 if now - checked_at >= self.cache_seconds]
        for token in stale:
            del self._cache[token]
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()

    def _warn(self, exc):
        now = self.clock()
        if self._last_warning is None \
                or now - self._last_warning >= WARNING_INTERVAL:
            self._last_warning = now
            logger.warning('cannot check token revocations in etcd (%s); '
                           'accepting tokens on their signature alone', exc)
