"""Revoked tokens, kept in etcd under ``/revoked-tokens/<token>`` until
they would have expired anyway: the key's value is that moment (seconds
since the epoch) and the key is attached to a lease that ends then, so
etcd deletes it on its own.

Every token of a user at once (a password change, "log out everywhere")
is one key, ``/revoked-users/<user id>``: its value is a moment, and the
user's tokens issued before it (claim ``iat``; a token without one counts
as issued before) are refused. Its lease ends when the last of those
tokens would have expired.

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
REVOKED_USERS_PREFIX = '/revoked-users/'
# What the mirror follows: both directories above.
MIRRORED_PREFIX = '/revoked-'
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
        self._cache = {}            # key -> (value or None, checked_at)
        self._lock = threading.Lock()
        self._last_warning = None
        self.mirror = RevocationMirror(etcd) if mirror else None

    def revoke(self, token, expires_at):
        """Record a token as revoked until ``expires_at`` (+ a margin)."""
        ttl = max(1, int(expires_at - time.time()) + EXPIRY_MARGIN)
        self._record(REVOKED_PREFIX + token, f'{time.time() + ttl:.0f}', ttl)

    def revoke_user(self, user_id, token_lifetime):
        """Revoke every token of the user issued until now; tokens live
        at most ``token_lifetime`` seconds."""
        # Tokens say when they were issued to the millisecond, rounded
        # down: rounding up here ends one issued in this very millisecond.
        since = math.ceil(time.time() * 1000) / 1000
        self._record(f'{REVOKED_USERS_PREFIX}{user_id}', f'{since:.3f}',
                     max(1, int(token_lifetime) + EXPIRY_MARGIN))

    def _record(self, key, value, ttl):
        self.etcd.put_expiring(key, value, ttl)
        if self.mirror is not None:
            self.mirror.add(key, value)
        with self._lock:
            self._cache[key] = (value, self.clock())

    def is_revoked(self, token, claims=None):
        """Whether the token was revoked, alone or (given its ``claims``)
        with every token of its user."""
        value = self._value(REVOKED_PREFIX + token)
        if value is not None and _expiry(value) > time.time():
            return True
        if claims is None:
            return False
        since = self._value(f'{REVOKED_USERS_PREFIX}{claims["user_id"]}')
        return since is not None and issued_at(claims) < revoked_since(since)

    def _value(self, key):
        if self.mirror is not None:
            found, value = self.mirror.lookup_key(key)
            if found:
                return value
        return self._look_up(key)

    def _look_up(self, key):
        """Ask etcd about one key (with the short cache)."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached and now - cached[1] < self.cache_seconds:
            return cached[0]
        try:
            value = self.etcd.get_value(key)
        except EtcdError as exc:
            self._warn(exc)
            value = cached[0] if cached else None
        with self._lock:
            if len(self._cache) >= CACHE_LIMIT:
                self._evict(now)
            self._cache[key] = (value, now)
        return value

    def _evict(self, now):
        stale = [key for key, (_, checked_at) in self._cache.items()
                 if now - checked_at >= self.cache_seconds]
        for key in stale:
            del self._cache[key]
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
    """Every revocation (of tokens and of users' tokens), followed from
    etcd by a background thread of this process (started at the first
    lookup: a process forked later, such as a gunicorn worker, starts its
    own)."""

    def __init__(self, etcd, watch_timeout=WATCH_TIMEOUT,
                 retry_interval=RETRY_INTERVAL):
        self.etcd = etcd
        self.watch_timeout = watch_timeout
        self.retry_interval = retry_interval
        self._values = {}           # key -> value
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopped = threading.Event()
        self._owner = None          # pid of the process the thread runs in
        self._listeners = []

    @property
    def synced(self):
        """Whether the directory has been read once (lookups are final)."""
        return self._synced.is_set()

    def lookup(self, token):
        """Whether the token is revoked (alone) once the mirror is synced,
        else None."""
        found, value = self.lookup_key(REVOKED_PREFIX + token)
        if not found:
            return None
        return value is not None and _expiry(value) > time.time()

    def lookup_key(self, key):
        """``(True, value or None)`` once the mirror is synced, else
        ``(False, None)``."""
        self.start()
        if not self._synced.is_set():
            return False, None
        with self._lock:
            return True, self._values.get(key)

    def add(self, key, value):
        with self._lock:
            self._values[key] = value

    def add_listener(self, listener):
        """Call ``listener(key, value)`` (in the mirror's thread) for every
        revocation made from now on, as etcd tells the watch."""
        self._listeners.append(listener)

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
                                   exc, len(self._values))
                self._stopped.wait(self.retry_interval)

    def _read_all(self):
        """Replace the mirror with the directories; the revision to watch
        from."""
        found = self.etcd.get_prefix(MIRRORED_PREFIX)
        values = {kv.key: kv.value for kv in found.kvs}
        with self._lock:
            self._values = values
        self._synced.set()
        return found.revision + 1

    def _follow(self, revision):
        """Apply the next changes below the directories; the next revision
        to watch from."""
        events = self.etcd.watch_prefix(MIRRORED_PREFIX, revision,
                                        timeout=self.watch_timeout)
        with self._lock:
            for event in events:
                if event.type == 'DELETE':
                    self._values.pop(event.kv.key, None)
                else:
                    self._values[event.kv.key] = event.kv.value
                revision = max(revision, event.kv.mod_revision + 1)
            self._prune(time.time())
        for event in events:
            if event.type != 'DELETE':
                self._tell_listeners(event.kv.key, event.kv.value)
        return revision

    def _tell_listeners(self, key, value):
        for listener in self._listeners:
            try:
                listener(key, value)
            except Exception:
                logger.exception('revocation mirror: a listener failed')

    def _prune(self, now):
        """Forget revoked tokens past their expiry once there are many
        (etcd deletes their keys, but a watch may miss that)."""
        if len(self._values) > CACHE_LIMIT:
            for key in [key for key, value in self._values.items()
                        if key.startswith(REVOKED_PREFIX)
                        and _expiry(value) <= now]:
                del self._values[key]


def issued_at(claims):
    """When a token was issued; one issued before tokens carried ``iat``
    counts as older than any revocation."""
    iat = claims.get('iat')
    return iat if isinstance(iat, (int, float)) else -math.inf


def revoked_since(value):
    """The moment a user's revocation holds, from its key's value; one
    that is not a time (written by hand) revokes every token there is."""
    try:
        since = float(value)
    except ValueError:
        return math.inf
    return since if not math.isnan(since) else math.inf


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
