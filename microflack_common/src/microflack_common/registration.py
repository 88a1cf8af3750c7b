"""Service registration in the etcd registry (SPEC section 3).

An instance writes::

    /services/<name>/location           = its URL prefix
    /services/<name>/backend/<option>   = HAProxy backend options
    /services/<name>/upstream/<instance> = host:port   (on a lease)

The upstream key is attached to a lease of the instance's own (etcd v3;
TTL 50 s by default) that it keeps alive every 15 s, so an instance that
dies without a word leaves the registry on its own. :meth:`Registration.stop`
revokes the lease, which deletes the key at once (an instance's gunicorn
master calls it on SIGTERM: ``gunicorn_config``).

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

from .etcd_client import EtcdError, EtcdLeaseNotFound
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
        self.lease = None

    @property
    def service_key(self):
        return f'{SERVICES_PREFIX}/{self.name}'

    @property
    def upstream_key(self):
        return f'{self.service_key}/upstream/{self.instance}'

    def register(self):
        """Write every key once, the upstream key on a new lease (the old
        one, if any, is revoked); raises EtcdError if etcd is
        unreachable."""
        self._registered = False
        self.etcd.put(f'{self.service_key}/location', self.location)
        for option, value in self.backend_options.items():
            self.etcd.put(f'{self.service_key}/backend/{option}', value)
        old_lease, self.lease = self.lease, self.etcd.grant(self.ttl)
        self.etcd.put(self.upstream_key, self.address, lease=self.lease)
        self._registered = True
        if old_lease:
            self._revoke(old_lease)

    def _revoke(self, lease):
        try:
            self.etcd.revoke(lease)
        except EtcdError as exc:
            logger.info('cannot revoke the old lease of %s (%s); it ends '
                        'in at most %s s', self.instance, exc, self.ttl)

    def keep_alive(self):
        """Renew the lease, registering again if it had expired."""
        try:
            alive = self.lease and self.etcd.keep_alive(self.lease) > 0
        except EtcdLeaseNotFound:
            alive = False
        if alive:
            # The key may have gone while the lease lives (deleted by hand).
            kv = self.etcd.get(self.upstream_key)
            alive = kv is not None and kv.lease == self.lease
        if not alive:
            logger.warning('registration of %s had expired; registering '
                           'again', self.instance)
            self.lease = None
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
                delay = min(self.refresh, RETRY_INTERVAL)

    def stop(self):
        """Stop renewing and remove this instance's upstream key (its
        lease is revoked; the key is deleted too, in case a registration
        made before a lost answer left it on another lease)."""
        self._stopped.set()
        if self._thread is not None and \
                self._thread is not threading.current_thread():
            self._thread.join(timeout=self.refresh + 5)
        try:
            if self.lease:
                self.etcd.revoke(self.lease)
            self.etcd.delete(self.upstream_key)
            self.lease = None
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
