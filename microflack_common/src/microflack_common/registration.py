"""Service registration in the etcd registry (SPEC section 3).

An instance writes::

    /services/<name>/location           = its URL prefix
    /services/<name>/backend/<option>   = HAProxy backend options
    /services/<name>/upstream/<instance> = host:port   (TTL, refreshed)

The upstream key carries a TTL (50 s by default) and is refreshed every
15 s, so an instance that dies without a word leaves the registry on its
own. :meth:`Registration.stop` deletes the key at once (an instance's
gunicorn master calls it on SIGTERM: ``gunicorn_config``).

While etcd cannot be reached the instance tries again every
``RETRY_INTERVAL`` seconds, so that it is back in the registry a moment
after etcd answers again: an outage longer than the TTL expires every
registration at once, and the load balancer holds the last servers only
for a short grace (``microflack_admin/tools/lb_watcher.py``).
"""
import logging
import re
import threading
import time

from .etcd_client import EtcdError, EtcdKeyNotFound
from .names import problem

logger = logging.getLogger(__name__)

SERVICES_PREFIX = '/services'
# Seconds between attempts while etcd does not answer. An attempt on a
# stopped etcd is refused at once, so trying often costs nothing.
RETRY_INTERVAL = 0.25
ADDRESS_PATTERN = re.compile(r'^[A-Za-z0-9.-]+:([0-9]{1,5})\Z')
LOCATION_PATTERN = re.compile(r'^/[A-Za-z0-9._~/-]*\Z')


class RegistrationError(ValueError):
    pass


class Registration:
    def __init__(self, etcd, name, instance, address, location,
                 backend_options=None, ttl=50, refresh=15):
        # The load balancer skips what breaks these rules (names.py).
        for kind, value in (('service', name), ('instance', instance)):
            message = problem(kind, value)
            if message:
                raise RegistrationError(message)
        port = ADDRESS_PATTERN.match(address or '')
        if not port or not 1 <= int(port.group(1)) <= 65535:
            raise RegistrationError(
                f'invalid service address {address!r}: expected host:port')
        if not LOCATION_PATTERN.match(location or ''):
            raise RegistrationError(
                f'invalid service URL {location!r}: expected /path')
        if refresh >= ttl:
            raise RegistrationError(
                f'refresh interval ({refresh} s) must be shorter than the '
                f'TTL ({ttl} s)')
        self.etcd = etcd
        self.name = name
        self.instance = instance
        self.address = address
        self.location = location
        self.backend_options = dict(backend_options or {})
        self.ttl = ttl
        self.refresh = refresh
        self._stopped = threading.Event()
        self._thread = None
        self._registered = False

    @property
    def service_key(self):
        return f'{SERVICES_PREFIX}/{self.name}'

    @property
    def upstream_key(self):
        return f'{self.service_key}/upstream/{self.instance}'

    def register(self):
        """Write every key once; raises EtcdError if etcd is unreachable."""
        self.etcd.set(f'{self.service_key}/location', self.location)
        for option, value in self.backend_options.items():
            self.etcd.set(f'{self.service_key}/backend/{option}', value)
        self.etcd.set(self.upstream_key, self.address, ttl=self.ttl)
        self._registered = True

    def keep_alive(self):
        """Refresh the upstream key's TTL, re-registering if it expired."""
        try:
            self.etcd.refresh(self.upstream_key, self.ttl)
        except EtcdKeyNotFound:
            logger.warning('registration of %s had expired; registering '
                           'again', self.instance)
            self.register()

    def start(self):
        """Register now if possible, then keep the registration alive on a
        background thread until :meth:`stop`."""
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f'registration-{self.instance}')
        self._thread.start()
        return self

    def _run(self):
        delay, unreachable_since = 0, None
        while not self._stopped.wait(delay):
            try:
                if self._registered:
                    self.keep_alive()
                else:
                    self.register()
                    logger.info('registered %s at %s as %s', self.instance,
                                self.address, self.location)
                if unreachable_since is not None:
                    logger.info('the registry answers again after %.1f s',
                                time.monotonic() - unreachable_since)
                    unreachable_since = None
                delay = self.refresh
            except EtcdError as exc:
                # Once per outage: the attempts are many.
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                    logger.warning('cannot reach the registry (%s); trying '
                                   'again every %s s', exc,
                                   min(self.refresh, RETRY_INTERVAL))
                self._registered = False
                delay = min(self.refresh, RETRY_INTERVAL)

    def stop(self):
        """Stop refreshing and remove this instance's upstream key."""
        self._stopped.set()
        if self._thread is not None and \
                self._thread is not threading.current_thread():
            self._thread.join(timeout=self.refresh + 5)
        try:
            self.etcd.delete(self.upstream_key)
            logger.info('deregistered %s', self.instance)
        except EtcdError as exc:
            logger.warning('cannot deregister %s (%s); its key expires in '
                           'at most %s s', self.instance, exc, self.ttl)
        self._registered = False


def backend_options(config):
    """The load balancer's options for this service's backend: balance,
    timeout_server and, when the instance has a limit, maxconn."""
    options = {'balance': config.get('LB_ALGORITHM') or 'roundrobin'}
    if config.get('LB_TIMEOUT_SERVER'):
        options['timeout_server'] = str(config['LB_TIMEOUT_SERVER'])
    if config.get('LB_SERVER_MAXCONN'):
        options['maxconn'] = str(config['LB_SERVER_MAXCONN'])
    return options


def registration_from_config(etcd, config):
    """Build the Registration an instance with this Flask config makes."""
    address = config.get('SERVICE_ADDRESS')
    if not address:
        raise RegistrationError('SERVICE_ADDRESS is not set: give the '
                                'host:port this instance is reached at')
    return Registration(
        etcd, config['SERVICE_NAME'], config['INSTANCE_NAME'], address,
        config['SERVICE_URL'],
        backend_options=backend_options(config),
        ttl=config['REGISTRATION_TTL'], refresh=config['REGISTRATION_REFRESH'])
