"""A small client for the etcd v2 key API, the platform's registry.

Only what MicroFlack needs: get (optionally recursive), set with TTL and
refresh, delete, and watch. Several endpoints may be given; a request that
cannot reach one endpoint is tried on the next. Every call has a timeout.
"""
import json
import logging
import threading
from urllib.parse import quote, urlencode, urlsplit

import urllib3

from .config import ConfigError

logger = logging.getLogger(__name__)


class EtcdError(Exception):
    """etcd could not be reached or answered with an unexpected error."""


class EtcdKeyNotFound(EtcdError):
    """The key does not exist (etcd error code 100)."""


class EtcdTimeout(EtcdError):
    """etcd accepted the request but did not answer in time (or, for a
    watch, nothing changed)."""


class EtcdEventIndexCleared(EtcdError):
    """A watch asked for an index older than etcd keeps (error code 401)."""


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


class Node:
    """One etcd node: a key with a value, or a directory with children."""

    def __init__(self, data):
        self.key = data.get('key', '/')
        self.value = data.get('value')
        self.dir = data.get('dir', False)
        self.ttl = data.get('ttl')
        self.modified_index = data.get('modifiedIndex')
        self.children = [Node(child) for child in data.get('nodes', [])]

    @property
    def name(self):
        return self.key.rstrip('/').rsplit('/', 1)[-1]

    def leaves(self):
        """Every key with a value below this node, depth first."""
        if not self.dir:
            yield self
        for child in self.children:
            yield from child.leaves()

    def to_dict(self):
        """The subtree as nested dicts ({name: value or dict})."""
        if not self.dir:
            return self.value
        return {child.name: child.to_dict() for child in self.children}


class Response:
    def __init__(self, action, node, etcd_index):
        self.action = action
        self.node = node
        self.etcd_index = etcd_index


class EtcdClient:
    def __init__(self, urls, timeout=2.0, pool_size=4):
        if isinstance(urls, str):
            urls = parse_etcd_urls(urls)
        self.urls = list(urls)
        self.timeout = timeout
        self._http = urllib3.PoolManager(maxsize=pool_size, retries=False)
        self._lock = threading.Lock()
        self._preferred = 0

    def _request(self, method, key, params=None, fields=None, timeout=None):
        path = '/v2/keys' + quote('/' + key.lstrip('/'))
        if params:
            path += '?' + urlencode(params)
        body = urlencode(fields).encode() if fields is not None else None
        headers = {'Content-Type': 'application/x-www-form-urlencoded'} \
            if body is not None else {}
        timeout = self.timeout if timeout is None else timeout
        last_error = None
        start = self._preferred
        for attempt in range(len(self.urls)):
            index = (start + attempt) % len(self.urls)
            url = self.urls[index] + path
            try:
                response = self._http.request(
                    method, url, body=body, headers=headers,
                    timeout=urllib3.Timeout(connect=min(timeout, 2.0),
                                            read=timeout))
            except urllib3.exceptions.ReadTimeoutError:
                raise EtcdTimeout(f'no answer from {self.urls[index]} '
                                  f'within {timeout} s') from None
            except urllib3.exceptions.HTTPError as exc:
                last_error = exc
                continue
            if index != self._preferred:
                self._preferred = index
            return self._parse(response)
        raise EtcdError(f'etcd unreachable at {", ".join(self.urls)}: '
                        f'{last_error}')

    @staticmethod
    def _parse(response):
        try:
            data = json.loads(response.data or b'{}')
        except ValueError:
            raise EtcdError(f'etcd answered {response.status} '
                            f'with a body that is not JSON') from None
        if response.status >= 400 or 'errorCode' in data:
            code = data.get('errorCode')
            message = f"{data.get('message', 'error')}: {data.get('cause', '')}"
            if code == 100:
                raise EtcdKeyNotFound(message)
            if code == 401:
                raise EtcdEventIndexCleared(message)
            raise EtcdError(f'etcd error {code}: {message}')
        index = response.headers.get('X-Etcd-Index')
        return Response(data.get('action'), Node(data.get('node', {})),
                        int(index) if index else None)

    def get(self, key, recursive=False):
        params = {'recursive': 'true'} if recursive else None
        return self._request('GET', key, params=params).node

    def get_value(self, key, default=None):
        try:
            return self.get(key).value
        except EtcdKeyNotFound:
            return default

    def set(self, key, value, ttl=None):
        fields = {'value': value}
        if ttl is not None:
            fields['ttl'] = int(ttl)
        return self._request('PUT', key, fields=fields).node

    def refresh(self, key, ttl):
        """Extend a key's TTL without changing it or waking watchers."""
        fields = {'ttl': int(ttl), 'refresh': 'true', 'prevExist': 'true'}
        return self._request('PUT', key, fields=fields).node

    def delete(self, key, recursive=False):
        params = {'recursive': 'true', 'dir': 'true'} if recursive else None
        try:
            self._request('DELETE', key, params=params)
            return True
        except EtcdKeyNotFound:
            return False

    def current_index(self, key='/'):
        """The cluster's index, the starting point for a watch."""
        return self._request('GET', key).etcd_index

    def watch(self, key, wait_index=None, timeout=60):
        """Block until something below ``key`` changes (or timeout).

        Returns the Response of the change; raises EtcdEventIndexCleared
        when ``wait_index`` is too old, and EtcdTimeout when nothing
        happened.
        """
        params = {'wait': 'true', 'recursive': 'true'}
        if wait_index is not None:
            params['waitIndex'] = str(wait_index)
        return self._request('GET', key, params=params, timeout=timeout)
