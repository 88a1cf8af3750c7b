"""In-memory stand-ins for a service's collaborators, for unit tests only
(integration tests use a real etcd, Redis and services)."""
import time

from ..etcd_client import EtcdError, EtcdKeyNotFound, Node


class FakeEtcd:
    """In-memory etcd v2 key space with TTLs; set ``down = True`` to make
    every call fail as if etcd were unreachable."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.keys = {}          # key -> (value, expires_at or None)
        self.down = False
        self.calls = []

    def _check(self, name, key):
        self.calls.append((name, key))
        if self.down:
            raise EtcdError('etcd unreachable (fake)')

    def _live(self):
        now = self.clock()
        for key, (_, expires) in list(self.keys.items()):
            if expires is not None and expires <= now:
                del self.keys[key]
        return self.keys

    def get(self, key, recursive=False):
        self._check('get', key)
        keys = self._live()
        key = '/' + key.strip('/')
        if key in keys:
            return Node({'key': key, 'value': keys[key][0]})
        prefix = key.rstrip('/') + '/'
        below = sorted(k for k in keys if k.startswith(prefix))
        if not below:
            raise EtcdKeyNotFound(f'Key not found: {key}')
        return Node(self._tree(key, below, keys, recursive))

    def _tree(self, key, below, keys, recursive):
        prefix = key.rstrip('/') + '/'
        children = {}
        for full in below:
            head = full[len(prefix):].split('/', 1)[0]
            children.setdefault(head, []).append(full)
        nodes = []
        for head, fulls in sorted(children.items()):
            child = prefix + head
            if child in keys:
                nodes.append({'key': child, 'value': keys[child][0]})
            elif recursive:
                nodes.append(self._tree(child, fulls, keys, True))
            else:
                nodes.append({'key': child, 'dir': True})
        return {'key': key, 'dir': True, 'nodes': nodes}

    def get_value(self, key, default=None):
        try:
            return self.get(key).value
        except EtcdKeyNotFound:
            return default

    def set(self, key, value, ttl=None):
        self._check('set', key)
        key = '/' + key.strip('/')
        expires = self.clock() + ttl if ttl is not None else None
        self.keys[key] = (value, expires)
        return Node({'key': key, 'value': value})

    def refresh(self, key, ttl):
        self._check('refresh', key)
        key = '/' + key.strip('/')
        if key not in self._live():
            raise EtcdKeyNotFound(f'Key not found: {key}')
        self.keys[key] = (self.keys[key][0], self.clock() + ttl)
        return Node({'key': key, 'value': self.keys[key][0]})

    def delete(self, key, recursive=False):
        self._check('delete', key)
        key = '/' + key.strip('/')
        keys = self._live()
        doomed = [k for k in keys
                  if k == key or (recursive and k.startswith(key + '/'))]
        for k in doomed:
            del keys[k]
        return bool(doomed)

    def reset(self):
        self.keys.clear()
        self.calls.clear()
        self.down = False

    def ttl(self, key):
        """Seconds left on a key (None without TTL); for assertions."""
        value = self._live().get('/' + key.strip('/'))
        if value is None:
            raise EtcdKeyNotFound(key)
        return None if value[1] is None else value[1] - self.clock()


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
    exception instance to raise. Every call is kept in ``calls``."""

    def __init__(self, routes=None):
        self.routes = dict(routes or {})
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        handler = self.routes.get((method, url))
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
