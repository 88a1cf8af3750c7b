"""In-memory stand-ins for a service's collaborators, for unit tests only
(integration tests use a real etcd, Redis and services)."""
import base64
import functools
import time

from ..etcd_client import EtcdError, EtcdLeaseNotFound, KeyValue, Range


class FakeEtcd:
    """In-memory etcd v3 key space with leases (no watches); set
    ``down = True`` to make every call fail as if etcd were unreachable."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.keys = {}          # key -> (value, lease id or 0)
        self.lease_ends = {}    # lease id -> when it ends (clock)
        self.lease_ttls = {}    # lease id -> its TTL
        self.down = False
        self.calls = []
        self._revision = 1
        self._next_lease = 1

    def _check(self, name, key):
        self.calls.append((name, key))
        if self.down:
            raise EtcdError('etcd unreachable (fake)')

    def _live(self):
        now = self.clock()
        for lease, ends in list(self.lease_ends.items()):
            if ends <= now:
                self._drop_lease(lease)
        return self.keys

    def _drop_lease(self, lease):
        del self.lease_ends[lease]
        del self.lease_ttls[lease]
        for key in [k for k, (_, owner) in self.keys.items()
                    if owner == lease]:
            del self.keys[key]

    def _kv(self, key):
        value, lease = self.keys[key]
        return KeyValue({'key': _b64(key), 'value': _b64(value),
                         'lease': lease})

    def get(self, key):
        self._check('get', key)
        return self._kv(key) if key in self._live() else None

    def get_value(self, key, default=None):
        kv = self.get(key)
        return default if kv is None else kv.value

    def get_prefix(self, prefix):
        self._check('get_prefix', prefix)
        keys = self._live()
        return Range(self._revision, [self._kv(k) for k in sorted(keys)
                                      if k.startswith(prefix)])

    def revision(self):
        self._check('revision', '')
        return self._revision

    def put(self, key, value, lease=None):
        self._check('put', key)
        self._live()
        if lease and lease not in self.lease_ends:
            raise EtcdLeaseNotFound('requested lease not found')
        self._revision += 1
        self.keys[key] = (value, lease or 0)
        return self._revision

    def put_expiring(self, key, value, ttl):
        lease = self.grant(ttl)
        self.put(key, value, lease=lease)
        return lease

    def delete(self, key):
        self._check('delete', key)
        found = self._live().pop(key, None) is not None
        self._revision += found
        return found

    def delete_prefix(self, prefix):
        self._check('delete_prefix', prefix)
        doomed = [k for k in self._live() if k.startswith(prefix)]
        for key in doomed:
            del self.keys[key]
        self._revision += bool(doomed)
        return len(doomed)

    def grant(self, ttl):
        self._check('grant', '')
        lease, self._next_lease = self._next_lease, self._next_lease + 1
        self.lease_ends[lease] = self.clock() + ttl
        self.lease_ttls[lease] = ttl
        return lease

    def keep_alive(self, lease):
        self._check('keep_alive', '')
        self._live()
        if lease not in self.lease_ends:
            return 0
        self.lease_ends[lease] = self.clock() + self.lease_ttls[lease]
        return self.lease_ttls[lease]

    def revoke(self, lease):
        self._check('revoke', '')
        self._live()
        if lease not in self.lease_ends:
            return False
        self._drop_lease(lease)
        return True

    def time_to_live(self, lease):
        self._check('time_to_live', '')
        self._live()
        if lease not in self.lease_ends:
            return -1
        return int(self.lease_ends[lease] - self.clock())

    def leases(self):
        self._check('leases', '')
        self._live()
        return sorted(self.lease_ends)

    def reset(self):
        self.keys.clear()
        self.lease_ends.clear()
        self.lease_ttls.clear()
        self.calls.clear()
        self.down = False

    def ttl(self, key):
        """Seconds left on a key (None without a lease); for assertions.
        Raises KeyError when the key does not exist."""
        _, lease = self._live()[key]
        return self.lease_ends[lease] - self.clock() if lease else None


def _b64(text):
    return base64.b64encode(text.encode()).decode()


class FakeResponse:
    """Enough of requests.Response for the services' relays."""

    def __init__(self, status_code, body=None, headers=None):
        self.status_code = status_code
        self._body = body
        self.headers = headers or {}
        self.ok = status_code < 400

    def json(self):
        if self._body is None:
            raise ValueError('no JSON body')
        return self._body


class FakeServiceClient:
    """Stands in for ServiceClient: ``routes[(method, url)]`` is a function
    of the call's keyword arguments returning a FakeResponse, or an
    exception instance to raise; ``fallback(method, url, **kwargs)``, if
    set, answers the calls no route takes (else 404). Every call is kept
    in ``calls``."""

    def __init__(self, routes=None):
        self.routes = dict(routes or {})
        self.fallback = None
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        handler = self.routes.get((method, url))
        if handler is None and self.fallback is not None:
            handler = functools.partial(self.fallback, method, url)
        if handler is None:
            return FakeResponse(404, {'error': 'not found'})
        result = handler(**kwargs) if callable(handler) else handler
        if isinstance(result, Exception):
            raise result
        return result

    def get(self, url, **kwargs):
        return self.request('GET', url, **kwargs)

    def get_json(self, url, **kwargs):
        """The JSON of a GET that must answer 200."""
        rv = self.get(url, **kwargs)
        assert rv.status == 200, rv
        return rv.json

    def post(self, url, **kwargs):
        return self.request('POST', url, **kwargs)

    def put(self, url, **kwargs):
        return self.request('PUT', url, **kwargs)

    def delete(self, url, **kwargs):
        return self.request('DELETE', url, **kwargs)


class RecordingPusher:
    """Collects pushes as (class, model) pairs."""

    def __init__(self):
        self.pushes = []

    def push(self, class_name, model):
        self.pushes.append((class_name, model))

    def flush(self, timeout=5.0):
        return True


def reset_fakes(app):
    """Forget what the app's fake registry and pusher hold."""
    platform = app.extensions['microflack']
    if isinstance(platform.etcd, FakeEtcd):
        platform.etcd.reset()
    if isinstance(platform.pusher, RecordingPusher):
        platform.pusher.pushes.clear()
