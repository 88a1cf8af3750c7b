"""A small client for etcd's v3 API, the platform's registry.

It speaks the v3 JSON gateway (``POST /v3/kv/range`` and so on: the same
RPCs as gRPC, keys and values base64-encoded) over urllib3, which every
service loads anyway. Only what MicroFlack needs: ranges by key or prefix
with the revision they were read at, put (optionally attached to a lease),
delete, leases (grant, keep alive, revoke, time to live, list) and a watch
of a prefix from a given revision.

Why not a library: the maintained v3 client over the gateway, etcd3gw,
adds requests, futurist, pbr, debtcollector and wrapt, 7.6 MiB per process
(the messages worker would go over its 60 MiB target); its watch runs in a
thread pool that cannot report a compacted revision, a cancelled watch or a
closed stream, and it opens the watch without a timeout; its ``get`` drops
the revision a range was read at, which a watcher needs; and it talks to
one member only. Here several members may be given: a call that cannot
reach one member, or gets no answer from it in time, is tried on the
next, and the member that answered is asked first next time. Every call
has a timeout.
"""
import base64
import json
import logging
import threading
import time
from urllib.parse import urlsplit

import urllib3

from .config import ConfigError

logger = logging.getLogger(__name__)


class EtcdError(Exception):
    """etcd could not be reached or answered with an unexpected error."""


class EtcdTimeout(EtcdError):
    """A watch saw no change within its timeout."""


class EtcdCompacted(EtcdError):
    """A watch asked for a revision etcd has compacted away: read
    everything again, then watch from the revision of that read."""

    def __init__(self, message, compact_revision=None):
        super().__init__(message)
        self.compact_revision = compact_revision


class EtcdLeaseNotFound(EtcdError):
    """The lease does not exist (it expired or was revoked)."""


def parse_etcd_urls(value, variable='ETCD'):
    """Split a comma-separated list of etcd client URLs, checking each."""
    if not value or not value.strip():
        raise ConfigError(
            f'{variable} is not set: give the etcd client URL(s), '
            f'e.g. {variable}=http://127.0.0.1:2379')
    urls = []
    for item in value.split(','):
        item = item.strip()
        parts = urlsplit(item)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ('http', 'https') or not parts.hostname \
                or port is None or parts.path not in ('', '/') \
                or parts.query or parts.fragment:
            raise ConfigError(
                f'{variable} has a malformed etcd URL {item!r}: expected '
                f'http://host:port, several separated by commas')
        urls.append(f'{parts.scheme}://{parts.netloc}')
    return urls


def _encode(text):
    if isinstance(text, str):
        text = text.encode()
    return base64.b64encode(text).decode('ascii')


def _decode(text):
    return base64.b64decode(text or '').decode('utf-8', 'replace')


def prefix_end(prefix):
    """The range end that selects every key starting with ``prefix``."""
    data = bytearray(prefix.encode())
    while data and data[-1] == 0xff:
        data.pop()
    if not data:
        return '\0'
    data[-1] += 1
    return data.decode('utf-8', 'surrogateescape')


class KeyValue:
    """One key as etcd stores it."""

    __slots__ = ('key', 'value', 'lease', 'create_revision', 'mod_revision')

    def __init__(self, data):
        self.key = _decode(data.get('key'))
        self.value = _decode(data.get('value'))
        self.lease = int(data.get('lease', 0))
        self.create_revision = int(data.get('create_revision', 0))
        self.mod_revision = int(data.get('mod_revision', 0))

    @property
    def name(self):
        return self.key.rstrip('/').rsplit('/', 1)[-1]

    def __repr__(self):
        return f'KeyValue({self.key!r}, {self.value!r}, lease={self.lease})'


class Event:
    """A change seen by a watch: ``type`` is ``'PUT'`` or ``'DELETE'``."""

    __slots__ = ('type', 'kv')

    def __init__(self, data):
        self.type = data.get('type', 'PUT')
        self.kv = KeyValue(data.get('kv', {}))


class Range:
    """The keys a range read found, and the revision it was read at."""

    def __init__(self, revision, kvs):
        self.revision = revision
        self.kvs = kvs

    def tree(self, prefix):
        """The keys below ``prefix`` as nested dicts ({name: value or
        dict}), the shape of a directory tree."""
        root = {}
        for kv in self.kvs:
            parts = [p for p in kv.key[len(prefix):].split('/') if p]
            if not parts:
                continue
            node = root
            for part in parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            if not isinstance(node.get(parts[-1]), dict):
                node[parts[-1]] = kv.value
        return root


def _header_revision(data):
    return int(data.get('header', {}).get('revision', 0))


class EtcdClient:
    def __init__(self, urls, timeout=2.0, pool_size=4):
        if isinstance(urls, str):
            urls = parse_etcd_urls(urls)
        self.urls = list(urls)
        self.timeout = timeout
        self._http = urllib3.PoolManager(maxsize=pool_size, retries=False)
        self._lock = threading.Lock()
        self._preferred = 0

    def _members(self):
        start = self._preferred
        for attempt in range(len(self.urls)):
            yield (start + attempt) % len(self.urls)

    def _timeout(self, read):
        return urllib3.Timeout(connect=min(self.timeout, 2.0), read=read)

    def call(self, method, payload):
        """POST one RPC (``kv/range``, ``lease/grant``...) to the first
        member that answers; its JSON answer."""
        body = json.dumps(payload).encode()
        errors = []
        for index in self._members():
            url = f'{self.urls[index]}/v3/{method}'
            try:
                response = self._http.request(
                    'POST', url, body=body,
                    headers={'Content-Type': 'application/json'},
                    timeout=self._timeout(self.timeout))
            except urllib3.exceptions.HTTPError as exc:
                errors.append(f'{self.urls[index]}: {_reason(exc)}')
                continue
            if response.status in (502, 503, 504):
                # No leader on that member (an election, a partition).
                errors.append(f'{self.urls[index]}: HTTP {response.status}')
                continue
            self._preferred = index
            return self._parse(response)
        raise EtcdError('etcd unreachable: ' + '; '.join(errors))

    @staticmethod
    def _parse(response):
        try:
            data = json.loads(response.data or b'{}')
        except ValueError:
            raise EtcdError(f'etcd answered {response.status} '
                            f'with a body that is not JSON') from None
        if response.status >= 400 or 'error' in data:
            message = data.get('message') or data.get('error') or 'error'
            if 'lease not found' in message:
                raise EtcdLeaseNotFound(message)
            if 'compacted' in message:
                raise EtcdCompacted(message)
            raise EtcdError(f'etcd error (HTTP {response.status}): {message}')
        return data

    # -- keys ------------------------------------------------------------

    def get(self, key):
        """The KeyValue at ``key``, or None."""
        data = self.call('kv/range', {'key': _encode(key)})
        kvs = data.get('kvs') or []
        return KeyValue(kvs[0]) if kvs else None

    def get_value(self, key, default=None):
        kv = self.get(key)
        return default if kv is None else kv.value

    def get_prefix(self, prefix, revision=None):
        """Every key starting with ``prefix`` (a Range: keys sorted, and
        the revision they were read at)."""
        payload = {'key': _encode(prefix), 'range_end': _encode(
            prefix_end(prefix)), 'sort_order': 'ASCEND'}
        if revision is not None:
            payload['revision'] = str(revision)
        data = self.call('kv/range', payload)
        return Range(_header_revision(data),
                     [KeyValue(kv) for kv in data.get('kvs') or []])

    def revision(self):
        """The store's current revision."""
        data = self.call('kv/range', {'key': _encode('\0'), 'count_only':
                                      True})
        return _header_revision(data)

    def put(self, key, value, lease=None):
        """Write a key (attached to ``lease`` if given); the revision.
        Raises EtcdLeaseNotFound when the lease is gone."""
        payload = {'key': _encode(key), 'value': _encode(value)}
        if lease:
            payload['lease'] = str(lease)
        return _header_revision(self.call('kv/put', payload))

    def put_expiring(self, key, value, ttl):
        """Write a key on a new lease of ``ttl`` seconds; the lease."""
        lease = self.grant(ttl)
        self.put(key, value, lease=lease)
        return lease

    def delete(self, key):
        """Delete one key; whether it existed."""
        data = self.call('kv/deleterange', {'key': _encode(key)})
        return int(data.get('deleted', 0)) > 0

    def delete_prefix(self, prefix):
        """Delete every key starting with ``prefix``; how many."""
        data = self.call('kv/deleterange', {
            'key': _encode(prefix), 'range_end': _encode(prefix_end(prefix))})
        return int(data.get('deleted', 0))

    def compact(self, revision):
        self.call('kv/compaction', {'revision': str(revision)})

    # -- leases ----------------------------------------------------------

    def grant(self, ttl):
        """A new lease of ``ttl`` seconds; its id."""
        data = self.call('lease/grant', {'TTL': str(int(ttl))})
        return int(data['ID'])

    def keep_alive(self, lease):
        """Renew a lease; its TTL, 0 when it has expired or was revoked."""
        data = self.call('lease/keepalive', {'ID': str(lease)})
        return int(data.get('result', data).get('TTL', 0))

    def revoke(self, lease):
        """Revoke a lease, deleting its keys at once; whether it existed."""
        try:
            self.call('lease/revoke', {'ID': str(lease)})
            return True
        except EtcdLeaseNotFound:
            return False

    def time_to_live(self, lease):
        """A lease's remaining seconds, -1 when it does not exist."""
        data = self.call('lease/timetolive', {'ID': str(lease)})
        return int(data.get('TTL', -1))

    def leases(self):
        """The ids of every lease."""
        data = self.call('lease/leases', {})
        return [int(item['ID']) for item in data.get('leases') or []]

    # -- watches ---------------------------------------------------------

    def watch_prefix(self, prefix, start_revision, timeout=60):
        """Block until a key starting with ``prefix`` changes at or after
        ``start_revision``; the events of the first batch etcd sends.

        Raises EtcdTimeout when nothing changed within ``timeout``
        seconds, EtcdCompacted when ``start_revision`` was compacted away
        (read everything again), EtcdError when no member answers.
        """
        body = json.dumps({'create_request': {
            'key': _encode(prefix), 'range_end': _encode(prefix_end(prefix)),
            'start_revision': str(start_revision)}}).encode()
        errors = []
        for index in self._members():
            try:
                response, lines = self._open_watch(index, body)
            except _MemberFailed as exc:
                errors.append(f'{self.urls[index]}: {exc}')
                continue
            self._preferred = index
            try:
                return self._first_events(response, lines, timeout)
            except (TimeoutError, urllib3.exceptions.ReadTimeoutError):
                raise EtcdTimeout(f'nothing changed below {prefix} within '
                                  f'{timeout} s') from None
            except urllib3.exceptions.HTTPError as exc:
                raise EtcdError(f'the watch on {self.urls[index]} broke: '
                                f'{_reason(exc)}') from None
            finally:
                _discard(response)
        raise EtcdError('etcd unreachable: ' + '; '.join(errors))

    def _open_watch(self, index, body):
        """Start a watch on one member: (response, its remaining lines).
        Until etcd confirms the watch, the member has the usual time to
        answer, so a member that hangs is passed over."""
        response = None
        try:
            response = self._http.request(
                'POST', f'{self.urls[index]}/v3/watch', body=body,
                preload_content=False, timeout=self._timeout(self.timeout),
                headers={'Content-Type': 'application/json'})
            if response.status != 200:
                raise _MemberFailed(f'HTTP {response.status}')
            lines = _lines(response)
            created = _result(next(lines, None))
            self._check_cancelled(created)
            if not created.get('created'):
                raise _MemberFailed('the watch was not created')
            return response, lines
        except urllib3.exceptions.HTTPError as exc:
            _discard(response)
            raise _MemberFailed(_reason(exc)) from None
        except _MemberFailed:
            _discard(response)
            raise

    def _first_events(self, response, lines, timeout):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError()
            _set_read_timeout(response, remaining)
            result = _result(next(lines, None))
            self._check_cancelled(result)
            if result.get('events'):
                return [Event(event) for event in result['events']]

    @staticmethod
    def _check_cancelled(result):
        if result.get('canceled') or result.get('cancel_reason'):
            compact = int(result.get('compact_revision', 0) or 0)
            if compact:
                raise EtcdCompacted(
                    f'revision compacted (etcd keeps from {compact})',
                    compact_revision=compact)
            raise EtcdError('etcd cancelled the watch: '
                            f'{result.get("cancel_reason", "")}')


def _lines(response):
    """The JSON objects of a gateway stream, one per line."""
    buffer = b''
    for chunk in response.stream(4096, decode_content=True):
        buffer += chunk
        while b'\n' in buffer:
            line, buffer = buffer.split(b'\n', 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _result(line):
    if line is None:
        raise EtcdError('etcd closed the watch stream')
    try:
        data = json.loads(line)
    except ValueError:
        raise EtcdError('etcd sent a watch line that is not JSON') from None
    if 'error' in data:
        error = data['error']
        message = error.get('message', error) if isinstance(error, dict) \
            else error
        raise EtcdError(f'etcd watch error: {message}')
    return data.get('result', {})


class _MemberFailed(Exception):
    """One member did not answer a watch as it should."""


def _set_read_timeout(response, seconds):
    """Change the read timeout of a streaming response's socket."""
    connection = getattr(response, 'connection', None)
    sock = getattr(connection, 'sock', None)
    if sock is not None:
        sock.settimeout(seconds)


def _discard(response):
    """Close a streaming response's connection (etcd would go on sending)
    and give the closed connection back to the pool, which reopens it."""
    if response is not None:
        response.close()
        response.release_conn()


def _reason(exc):
    reason = getattr(exc, 'reason', None)
    return str(reason or exc)
