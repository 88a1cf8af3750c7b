"""Revoked tokens, kept in etcd under ``/revoked-tokens/<token>`` until
they would have expired anyway: the key's value is that moment (seconds
since the epoch) and the key is attached to a lease that ends then, so
etcd deletes it on its own.

Each serving process keeps a mirror of that directory in memory: a
background thread reads it once, then follows its changes with an etcd
watch, so a lookup costs no round trip and a revocation reaches every
service as soon as etcd tells the watchers (milliseconds). The mirror
outlives an etcd outage: a token revoked before etcd stopped stays refused
while it is down (a revocation asked for during the outage fails with 503:
the client knows it did not happen). Until the mirror has read the
directory once (etcd down since the process started), each token is looked
up in etcd, the answer cached for ``REVOCATION_CACHE_SECONDS``; if etcd
cannot answer that either, the token is judged on its signature alone,
with a warning.
"""
import logging
import math
import os
import threading
import time

from .etcd_client import EtcdCompacted, EtcdError, EtcdTimeout

logger = logging.getLogger(__name__)

REVOKED_PREFIX = '/revoked-tokens/'
# Kept past the token's expiry so clocks a little apart still agree.
EXPIRY_MARGIN = 5
WARNING_INTERVAL = 30
CACHE_LIMIT = 10000
# The mirror's watch asks etcd to answer within this many seconds when
# nothing changes; after a failure it tries again this often.
WATCH_TIMEOUT = 50
RETRY_INTERVAL = 0.5
LONGEST_TOKEN_LIFE = 24 * 3600


class RevocationList:
    def __init__(self, etcd, cache_seconds=2.0, clock=time.monotonic,
                 mirror=False):
        self.etcd = etcd
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache = {}            # token -> (revoked, checked_at)
        self._lock = threading.Lock()
        self._last_warning = None
        self.mirror = RevocationMirror(etcd) if mirror else None

    def revoke(self, token, expires_at):
        """Record a token as revoked until ``expires_at`` (+ a margin)."""
        ttl = max(1, int(expires_at - time.time()) + EXPIRY_MARGIN)
        until = time.time() + ttl
        self.etcd.put_expiring(REVOKED_PREFIX + token, f'{until:.0f}', ttl)
        if self.mirror is not None:
            self.mirror.add(token, until)
        with self._lock:
            self._cache[token] = (True, self.clock())

    def is_revoked(self, token):
        if self.mirror is not None:
            revoked = self.mirror.lookup(token)
            if revoked is not None:
                return revoked
        return self._look_up(token)

    def _look_up(self, token):
        """Ask etcd about one token (with the short cache)."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(token)
        if cached and now - cached[1] < self.cache_seconds:
            return cached[0]
        try:
            revoked = self.etcd.get(REVOKED_PREFIX + token) is not None
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


class RevocationMirror:
    """Every revoked token, followed from etcd by a background thread of
    this process (started at the first lookup: a process forked later, such
    as a gunicorn worker, starts its own)."""

    def __init__(self, etcd, watch_timeout=WATCH_TIMEOUT,
                 retry_interval=RETRY_INTERVAL):
        self.etcd = etcd
        self.watch_timeout = watch_timeout
        self.retry_interval = retry_interval
        self._expires = {}          # token -> wall-clock expiry
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopped = threading.Event()
        self._owner = None          # pid of the process the thread runs in

    @property
    def synced(self):
        """Whether the directory has been read once (lookups are final)."""
        return self._synced.is_set()

    def lookup(self, token):
        """True or False once the mirror is synced, else None."""
        self.start()
        if not self._synced.is_set():
            return None
        with self._lock:
            expires = self._expires.get(token)
        return expires is not None and expires > time.time()

    def add(self, token, until):
        with self._lock:
            self._expires[token] = until

    def start(self):
        if self._owner == os.getpid():
            return
        with self._lock:
            if self._owner == os.getpid():
                return
            self._owner = os.getpid()
            # A forked process inherits the parent's state, not its thread.
            self._synced.clear()
        threading.Thread(target=self._run, daemon=True,
                         name='revocation-mirror').start()

    def stop(self):
        self._stopped.set()

    def wait_synced(self, timeout):
        self.start()
        return self._synced.wait(timeout)

    def _run(self):
        revision, failing_since = None, None
        while not self._stopped.is_set():
            try:
                revision = self._read_all() if revision is None \
                    else self._follow(revision)
                if failing_since is not None:
                    logger.info('revocation mirror: etcd answers again after '
                                '%.1f s', time.monotonic() - failing_since)
                    failing_since = None
            except EtcdTimeout:
                continue        # nothing changed within watch_timeout
            except EtcdCompacted:
                revision = None     # fell behind etcd's history: read all
            except EtcdError as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    logger.warning('revocation mirror: cannot reach etcd '
                                   '(%s); keeping the %d revocations known',
                                   exc, len(self._expires))
                self._stopped.wait(self.retry_interval)

    def _read_all(self):
        """Replace the mirror with the directory; the revision to watch
        from."""
        found = self.etcd.get_prefix(REVOKED_PREFIX)
        expires = {kv.key[len(REVOKED_PREFIX):]: _expiry(kv.value)
                   for kv in found.kvs}
        with self._lock:
            self._expires = expires
        self._synced.set()
        return found.revision + 1

    def _follow(self, revision):
        """Apply the next changes below the directory; the next revision
        to watch from."""
        events = self.etcd.watch_prefix(REVOKED_PREFIX, revision,
                                        timeout=self.watch_timeout)
        with self._lock:
            for event in events:
                token = event.kv.key[len(REVOKED_PREFIX):]
                if event.type == 'DELETE':
                    self._expires.pop(token, None)
                else:
                    self._expires[token] = _expiry(event.kv.value)
                revision = max(revision, event.kv.mod_revision + 1)
            self._prune(time.time())
        return revision

    def _prune(self, now):
        if len(self._expires) > CACHE_LIMIT:
            for token in [t for t, e in self._expires.items() if e <= now]:
                del self._expires[token]


def _expiry(value):
    """When a revocation ends, from its key's value. A value that is not a
    time (written by hand) counts as a token's longest life from now: the
    key's lease removes it in any case."""
    try:
        until = float(value)
    except ValueError:
        until = math.nan
    return until if math.isfinite(until) \
        else time.time() + LONGEST_TOKEN_LIFE
