"""HTTP calls from one service to another, through the load balancer.

Relative URLs (``/api/users/me``) go to ``LB``. Connections are pooled.
Connection errors and 503 (no server available yet) are retried with a
short exponential backoff for every method, 502 only for idempotent ones
(a POST may have reached a server that then died). Every request has a
connect and a read timeout.

``requests`` is imported on the first call: a service that never calls
another one (messages) does not carry it in memory.
"""
import threading

from urllib3.util.retry import Retry

IDEMPOTENT_METHODS = frozenset(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])


class PlatformRetry(Retry):
    def is_retry(self, method, status_code, has_retry_after=False):
        if status_code == 503:
            return self.total is None or self.total > 0
        if status_code == 502 and method.upper() in IDEMPOTENT_METHODS:
            return self.total is None or self.total > 0
        return False


class ServiceClient:
    def __init__(self, base_url, connect_timeout=3.05, read_timeout=10,
                 retries=3, backoff_factor=0.1, pool_size=10):
        self.base_url = (base_url or '').rstrip('/')
        self.timeout = (connect_timeout, read_timeout)
        self._retry = PlatformRetry(
            total=retries, connect=retries, read=False, status=retries,
            other=0, allowed_methods=None, status_forcelist=(502, 503),
            backoff_factor=backoff_factor, raise_on_status=False,
            respect_retry_after_header=False)
        self._pool_size = pool_size
        self._session = None
        self._lock = threading.Lock()

    @property
    def session(self):
        """The pooled requests session, made on first use."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import requests
                    from requests.adapters import HTTPAdapter
                    adapter = HTTPAdapter(max_retries=self._retry,
                                          pool_connections=self._pool_size,
                                          pool_maxsize=self._pool_size)
                    session = requests.Session()
                    session.mount('http://', adapter)
                    session.mount('https://', adapter)
                    # Never route platform traffic through proxies.
                    session.trust_env = False
                    # Nor have it compressed (the load balancer gzips JSON
                    # for clients that accept it): between services it
                    # would cost CPU at both ends to save next to nothing.
                    session.headers['Accept-Encoding'] = 'identity'
                    self._session = session
        return self._session

    def url(self, url):
        if url.startswith(('http://', 'https://')):
            return url
        if not self.base_url:
            raise RuntimeError('LB is not set: relative service URLs go to '
                               'the load balancer')
        return self.base_url + '/' + url.lstrip('/')

    def request(self, method, url, token=None, auth=None, **kwargs):
        """Send a request; ``token`` adds a Bearer header, ``auth`` is
        requests' basic auth tuple. Raises requests.RequestException when
        no answer could be had."""
        headers = dict(kwargs.pop('headers', None) or {})
        if token is not None:
            headers['Authorization'] = f'Bearer {token}'
        kwargs.setdefault('timeout', self.timeout)
        return self.session.request(method, self.url(url), headers=headers,
                                    auth=auth, **kwargs)

    def get(self, url, **kwargs):
        return self.request('GET', url, **kwargs)

    def post(self, url, **kwargs):
        return self.request('POST', url, **kwargs)

    def put(self, url, **kwargs):
        return self.request('PUT', url, **kwargs)

    def delete(self, url, **kwargs):
        return self.request('DELETE', url, **kwargs)
