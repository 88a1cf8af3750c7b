"""Render HAProxy's configuration from the registry's /services tree.

This module plays the template part of confd: :func:`render` is a pure
function from the tree (nested dicts, as ``Range.tree()`` returns them)
and the load balancer's settings to the text of haproxy.cfg. Registry
layout and routing rules: SPEC section 3::

    /services/<name>/location            URL prefix: /api/users, /, /socket.io
    /services/<name>/backend/<option>    backend option: ``balance``,
                                         ``maxconn`` (requests each server
                                         is sent at once; more wait in
                                         HAProxy's queue), ``timeout_server``
                                         (seconds to wait for an answer)
    /services/<name>/upstream/<instance> host:port of one instance
    /services/<name>/weight/<instance>   optional server weight, 1-256

Anything malformed is left out with a warning, so that no registry entry
can produce a configuration HAProxy rejects.
"""
import ipaddress
import re
from dataclasses import dataclass, field

# The names the services register under: one rule for both sides.
from microflack_common.names import valid as valid_name

LOCATION = re.compile(r'^/[A-Za-z0-9._~/-]*$')
HOST_LABEL = re.compile(r'^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$')
STATS_USER = re.compile(r'^[A-Za-z0-9._-]{1,64}$')
# Printable ASCII without the single quote that encloses it in the config.
STATS_PASSWORD = re.compile(r"^[!-&(-~]{1,128}$")
SAFE_PATH = re.compile(r'^/[A-Za-z0-9._/+-]*$')

BALANCE_ALGORITHMS = ('roundrobin', 'static-rr', 'leastconn', 'first',
                      'source', 'uri')
DEFAULT_BALANCE = 'roundrobin'
MAX_THREADS = 64
MAX_LOCATION_LENGTH = 200
MIN_WEIGHT, MAX_WEIGHT = 1, 256
# Backend options besides balance: their accepted range.
MAXCONN_RANGE = (1, 10000)
TIMEOUT_SERVER_RANGE = (1, 3600)        # seconds
MAX_CLIENT_CONNECTIONS = 100000
MAX_RATE = 100000          # requests per minute of a rate limit
STATS_URI = '/stats'
# Checks every second, every 0.5 s once one failed: two failures (at most
# about 2 s) take a server out, one success brings it back. The requests a
# server out holds are left to finish (a stopping instance drains them;
# `on-marked-down shutdown-sessions` cut them, and failed POSTs of a
# rolling upgrade); a hung one's wait ends at timeout server, and an
# idempotent request is then sent to another server. A name that does not
# resolve leaves its server in maintenance instead of failing.
DEFAULT_SERVER = ('inter 1s fastinter 500ms downinter 1s fall 2 rise 1 '
                  'init-addr libc,none')
# Requests that may be sent again after a server got them (RFC 9110 9.2.2;
# TRACE left out, nothing here answers it).
IDEMPOTENT_METHODS = ('GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE')
# Answers compressed (gzip, by libslz: fast, one level) for a client that
# accepts it: the API's JSON and what the chat page loads. Not text/plain:
# Socket.IO's polling answers are mostly a few bytes, which gzip makes
# larger, and engine.io compresses its large ones itself. When HAProxy
# compresses and when not (HTTP/1.0, no-transform, already encoded...):
# docs/compression.md.
COMPRESSED_TYPES = ('application/json', 'text/html', 'text/css',
                    'text/javascript', 'application/javascript',
                    'image/svg+xml')
COMPRESSION = ('compression algo gzip',
               f'compression type {" ".join(COMPRESSED_TYPES)}')
# No request body larger than this reaches a service (the REST services
# take 256 KiB at most; Socket.IO's polling transport 1 MB): a larger one
# is answered 413 at once instead of hanging in a service that never
# reads it.
MAX_BODY = 1000000
# The errors HAProxy answers itself, in the API's shape ({"error": ...},
# JSON) rather than its HTML pages.
JSON_ERRORS = {
    400: 'bad request',
    403: 'forbidden',
    408: 'request timeout',
    413: 'request too large',
    429: 'too many requests',
    500: 'internal error',
    502: 'bad gateway',
    503: 'service unavailable',
    504: 'gateway timeout',
}

# Rate limits: (setting, method and path, what the count is kept per, its
# stick table's key type, its 429's message). Per client address for
# logins and registrations; per token for posts: Socket.IO's relays reach
# the load balancer from the socketio instances' address, each with its
# user's token.
RATE_LIMITS = (
    ('logins_per_minute', 'POST /api/tokens', 'src', 'ip',
     'too many login attempts from this address, try again later'),
    ('registrations_per_minute', 'POST /api/users', 'src', 'ip',
     'too many registrations from this address, try again later'),
    ('posts_per_minute', 'POST /api/messages',
     'req.fhdr(authorization),sha1', 'binary len 20',
     'too many messages, wait a moment'),
)
RATE_WINDOW = 60            # seconds; a 429 says to retry after this


@dataclass(frozen=True)
class Settings:
    """What the configuration needs besides the registry."""
    stats_user: str
    stats_password: str
    stats_socket: str
    state_file: str
    bind: str = '127.0.0.1'
    port: int = 80
    # HAProxy's threads. One by default: its work per request is small next
    # to the Python workers', and on a small host a second thread competes
    # with them for the cores (measured: a quarter more CPU per request).
    threads: int = 1
    # Connections one client address may hold open at once; more are
    # refused. Enough for many browsers behind one NAT address.
    client_maxconn: int = 500
    # Requests a minute (a sliding window); 0 turns a limit off.
    logins_per_minute: int = 30
    registrations_per_minute: int = 10
    posts_per_minute: int = 120
    # HTTPS on this port (0: none) with this PEM file (certificate chain
    # and key). With https_redirect, plain HTTP requests are sent to HTTPS
    # (and HTTPS answers carry HSTS), except those from internal_sources:
    # the platform's own services, which call the load balancer over HTTP.
    https_port: int = 0
    tls_cert: str = ''
    https_redirect: bool = False
    internal_sources: tuple = ('127.0.0.1',)

    def __post_init__(self):
        try:
            ipaddress.IPv4Address(self.bind)
        except ValueError:
            raise ValueError(f'bind address {self.bind!r} is not an IPv4 '
                             f'address') from None
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 1 <= self.port <= 65535:
            raise ValueError(f'port {self.port!r} is not in 1-65535')
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) \
                or not 1 <= self.threads <= MAX_THREADS:
            raise ValueError(f'threads {self.threads!r} is not in '
                             f'1-{MAX_THREADS}')
        if isinstance(self.client_maxconn, bool) \
                or not isinstance(self.client_maxconn, int) \
                or not 1 <= self.client_maxconn <= MAX_CLIENT_CONNECTIONS:
            raise ValueError(f'client_maxconn {self.client_maxconn!r} is not '
                             f'in 1-{MAX_CLIENT_CONNECTIONS}')
        for name, *_ in RATE_LIMITS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value <= MAX_RATE:
                raise ValueError(f'{name} {value!r} is not in 0-{MAX_RATE}')
        self._check_https()
        if not STATS_USER.fullmatch(self.stats_user or ''):
            raise ValueError('the stats user must be 1-64 characters among '
                             'letters, digits, ".", "_" and "-"')
        if not STATS_PASSWORD.fullmatch(self.stats_password or ''):
            raise ValueError('the stats password must be 1-128 printable '
                             'ASCII characters, without spaces or quotes')
        for label, path in (('stats socket', self.stats_socket),
                            ('server state file', self.state_file)):
            if not SAFE_PATH.fullmatch(path or ''):
                raise ValueError(
                    f'{label} path {path!r} must be absolute and made of '
                    f'letters, digits and "._/+-"')


    def _check_https(self):
        if isinstance(self.https_port, bool) \
                or not isinstance(self.https_port, int) \
                or not 0 <= self.https_port <= 65535 \
                or self.https_port == self.port:
            raise ValueError(f'https_port {self.https_port!r} is not 0 or a '
                             f'port other than {self.port}')
        if self.https_port and not SAFE_PATH.fullmatch(self.tls_cert or ''):
            raise ValueError(f'tls_cert {self.tls_cert!r} must be the absolute '
                             f'path of a PEM file, made of letters, digits '
                             f'and "._/+-"')
        if not isinstance(self.https_redirect, bool) \
                or (self.https_redirect and not self.https_port):
            raise ValueError('https_redirect must be true or false, and '
                             'needs an https_port')
        sources = self.internal_sources
        if isinstance(sources, str) or not isinstance(sources, (list, tuple)):
            raise ValueError('internal_sources must be a list of addresses')
        for source in sources:
            try:
                ipaddress.IPv4Network(source, strict=False)
            except (ValueError, TypeError):
                raise ValueError(f'internal source {source!r} is not an IPv4 '
                                 f'address or network') from None
        # Hashable and printable the same way whatever the JSON gave.
        object.__setattr__(self, 'internal_sources', tuple(sources))


@dataclass(frozen=True)
class Server:
    name: str
    host: str
    port: int
    weight: int | None = None

    def line(self):
        text = f'server {self.name} {self.host}:{self.port} check'
        if self.weight is not None:
            text += f' weight {self.weight}'
        return text


@dataclass
class Service:
    name: str
    location: str
    balance: str = DEFAULT_BALANCE
    maxconn: int | None = None
    timeout_server: int | None = None
    servers: list = field(default_factory=list)

    @property
    def backend(self):
        return f'{self.name}_backend'


@dataclass
class Rendered:
    text: str
    warnings: list


def parse_address(value):
    """``host:port`` -> (host, port) or None. The host is an IPv4 address
    or a DNS name; the port is 1-65535."""
    if not isinstance(value, str) or ':' not in value:
        return None
    host, _, port = value.rpartition(':')
    if not port.isascii() or not port.isdigit() or len(port) > 5 \
            or not 1 <= int(port) <= 65535:
        return None
    if not host.isascii():
        return None
    try:
        return str(ipaddress.IPv4Address(host)), int(port)
    except ValueError:
        pass
    labels = host.split('.')
    # A name whose last label is numeric would be read as an address.
    if len(host) > 253 or labels[-1].isdigit() \
            or not all(HOST_LABEL.fullmatch(label) for label in labels):
        return None
    return host.lower(), int(port)


def parse_number(value, low, high):
    """A decimal integer string in low-high -> int, else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit() \
            and len(value) <= len(str(high)) and low <= int(value) <= high:
        return int(value)
    return None


def parse_weight(value):
    return parse_number(value, MIN_WEIGHT, MAX_WEIGHT)


def normalize_location(value):
    """The routed prefix without a trailing slash ("/" stays "/"), or None
    when the value is not an acceptable location."""
    if not isinstance(value, str) or len(value) > MAX_LOCATION_LENGTH \
            or not LOCATION.fullmatch(value):
        return None
    location = value.rstrip('/') or '/'
    if '//' in location:
        return None
    return location


def _read_service(name, entry, warn):
    """One /services/<name> directory -> Service, or None if unusable."""
    where = f'/services/{name}'
    if not isinstance(entry, dict):
        warn(f'{where}: not a directory; skipped')
        return None
    if 'location' not in entry:
        warn(f'{where}: no location; skipped')
        return None
    location = normalize_location(entry['location'])
    if location is None:
        warn(f'{where}/location: invalid location {entry["location"]!r}; '
             f'service skipped')
        return None
    if location != '/' and location.startswith(STATS_URI):
        warn(f'{where}/location: {location!r} is shadowed by the stats page '
             f'at {STATS_URI}; service skipped')
        return None
    service = Service(name, location)

    backend = entry.get('backend', {})
    if not isinstance(backend, dict):
        warn(f'{where}/backend: not a directory; ignored')
        backend = {}
    for option, value in sorted(backend.items()):
        if option in ('maxconn', 'timeout_server'):
            low, high = MAXCONN_RANGE if option == 'maxconn' \
                else TIMEOUT_SERVER_RANGE
            number = parse_number(value, low, high)
            if number is None:
                warn(f'{where}/backend/{option}: invalid value {value!r} '
                     f'(expected {low}-{high}); ignored')
            else:
                setattr(service, option, number)
        elif option != 'balance':
            warn(f'{where}/backend/{option}: unsupported backend option; '
                 f'ignored')
        elif value not in BALANCE_ALGORITHMS:
            warn(f'{where}/backend/balance: unsupported algorithm {value!r}; '
                 f'using {DEFAULT_BALANCE}')
        else:
            service.balance = value

    weights = entry.get('weight', {})
    if not isinstance(weights, dict):
        warn(f'{where}/weight: not a directory; ignored')
        weights = {}
    upstream = entry.get('upstream', {})
    if not isinstance(upstream, dict):
        warn(f'{where}/upstream: not a directory; ignored')
        upstream = {}
    for instance, address in sorted(upstream.items()):
        key = f'{where}/upstream/{instance}'
        if not valid_name('instance', instance):
            warn(f'{key}: invalid instance name; skipped')
            continue
        parsed = parse_address(address)
        if parsed is None:
            warn(f'{key}: invalid address {address!r} (expected host:port); '
                 f'skipped')
            continue
        weight = None
        if instance in weights:
            weight = parse_weight(weights[instance])
            if weight is None:
                warn(f'{where}/weight/{instance}: invalid weight '
                     f'{weights[instance]!r} (expected {MIN_WEIGHT}-'
                     f'{MAX_WEIGHT}); default weight used')
        service.servers.append(Server(instance, *parsed, weight))
    return service


def read_services(tree, warn):
    """The routable services of a /services tree, one per location."""
    if tree is None:
        return []
    if not isinstance(tree, dict):
        warn('/services: not a directory; nothing to route')
        return []
    candidates = []
    for name, entry in sorted(tree.items()):
        if not valid_name('service', name):
            warn(f'/services/{name}: invalid service name; skipped')
            continue
        service = _read_service(name, entry, warn)
        if service is not None:
            candidates.append(service)
    # Two services claiming one location: the one with instances wins (a
    # stale entry must not hide a live one), then the first by name.
    candidates.sort(key=lambda s: (not s.servers, s.name))
    services, owners = [], {}
    for service in candidates:
        if service.location in owners:
            warn(f'/services/{service.name}: location {service.location!r} '
                 f'is already routed to {owners[service.location]}; skipped')
            continue
        owners[service.location] = service.name
        services.append(service)
    return sorted(services, key=lambda s: s.name)


def _quote(value):
    return f"'{value}'"


def _rate_limits(settings):
    """The frontend's rules for the limits that are on, and the backends
    that only hold their stick tables."""
    rules, tables = [], []
    # One sticky counter (sc1) serves them all: a request is counted by
    # one limit at most. (sc0 counts the address's connections.)
    for name, request, key, key_type, message in RATE_LIMITS:
        if not getattr(settings, name):
            continue
        method, path = request.split()
        table = f'rate_{name.removesuffix("_per_minute")}'
        applies = f'{{ method {method} }} {{ path {path} }}'
        if key.startswith('req.'):
            applies += f' {{ {key.split(",")[0]} -m found }}'
        rules += [
            f'    http-request track-sc1 {key} table {table} '
            f'if {applies}',
            f'    http-request deny status 429 content-type application/json '
            f'string \'{{"error": "{message}"}}\' '
            f'hdr Retry-After {RATE_WINDOW} if {applies} '
            f'{{ sc1_http_req_rate gt {getattr(settings, name)} }}',
        ]
        tables += ['', f'backend {table}',
                   f'    stick-table type {key_type} size 100k expire '
                   f'{2 * RATE_WINDOW}s store '
                   f'http_req_rate({RATE_WINDOW}s)']
    if rules:
        rules.insert(0, '    # Rate limits (lb_config.RATE_LIMITS): a '
                        'refused request counts too, so')
        rules.insert(1, '    # a client that keeps trying stays refused.')
    return rules, tables


# Browsers keep to HTTPS for this long once told (HSTS), in seconds.
HSTS_MAX_AGE = 180 * 86400


def _https(settings):
    """The frontend's HTTPS lines: its listener, and the redirect of plain
    HTTP with HSTS when asked for."""
    if not settings.https_port:
        return []
    lines = [
        '    # HTTPS (install/make-tls.sh makes the certificate); the',
        '    # services hear which scheme the client used.',
        f'    bind {settings.bind}:{settings.https_port} ssl crt '
        f'{settings.tls_cert} alpn http/1.1',
        '    http-request set-header X-Forwarded-Proto https if { ssl_fc }',
        '    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }',
    ]
    if settings.https_redirect:
        port = '' if settings.https_port == 443 \
            else f':{settings.https_port}'
        internal = ' '.join(settings.internal_sources)
        lines += [
            '    # Clients over plain HTTP go to HTTPS (308: same method and',
            '    # body); the services call the load balancer over HTTP from',
            '    # the internal addresses.',
            '    http-request redirect location '
            f'https://%[req.hdr(host),field(1,:)]{port}%[pathq] code 308 '
            f'if !{{ ssl_fc }} !{{ src {internal} }}',
            '    http-response set-header Strict-Transport-Security '
            f'"max-age={HSTS_MAX_AGE}" if {{ ssl_fc }}',
        ]
    return lines


def _global_and_defaults(settings, rate_rules):
    methods = ' '.join(IDEMPOTENT_METHODS)
    rate_rules = '\n'.join(rate_rules)
    https = '\n'.join(_https(settings))
    compression = '\n'.join(f'    {line}' for line in COMPRESSION)
    json_errors = '\n'.join(
        f'    http-error status {status} content-type application/json '
        f'string \'{{"error": "{message}"}}\''
        for status, message in JSON_ERRORS.items())
    return f"""\
global
    nbthread {settings.threads}
    stats socket {settings.stats_socket} mode 600 level admin
    server-state-file {settings.state_file}
    # Old workers keep serving their connections after a reload, up to this.
    hard-stop-after 10m
    # To HAProxy's standard output, which mflb appends to the LB log.
    log stdout format raw local0
    # Room for a whole request body (option http-buffer-request): a
    # message of 10,000 characters is up to 40 kB of UTF-8. Buffers are
    # taken only while a connection moves data.
    tune.bufsize 65536

defaults
    mode http
    option forwardfor
    # A line per failed or aborted request (with its termination state),
    # none for the others: the reason of an error, at no cost per request.
    log global
    option httplog
    option dontlog-normal
    # A client connection keeps its server connection between requests
    # (never shared with another client's): no new connection to gunicorn
    # per request. gunicorn keeps an idle one open longer (keepalive 15 s)
    # than HAProxy keeps an idle client connection (10 s), so it never
    # closes one under a request.
    option http-keep-alive
    http-reuse never
    # On reload the old worker answers the next request of an idle client
    # connection (with Connection: close) instead of closing it under the
    # client, which would fail a request sent at that moment.
    option idle-close-on-response
    # A request reaches a server only once its body is here, so a client
    # that sends it slowly holds no server thread; the headers and body
    # must arrive within timeout http-request (else 408).
    option http-buffer-request
    timeout connect 2s
    timeout client 60s
    # Overridden by the timeout_server a service registers; an idempotent
    # request that gets no answer in time is sent elsewhere.
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 5s
    # Under load, a starting instance may need over a second to answer.
    timeout check 2s
    # WebSocket connections (Socket.IO) once upgraded.
    timeout tunnel 1h
    # A failed attempt is retried, on another server.
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
    # Every service answers GET /health with 200.
    option httpchk GET /health
    # A dead server is out after two failed checks.
    default-server {DEFAULT_SERVER}
    # Servers marked DOWN (or in maintenance) stay so across reloads.
    load-server-state-from-file global
    # The errors HAProxy answers itself are JSON, as the API's are.
{json_errors}

frontend http
    bind {settings.bind}:{settings.port}
{https}
    # At most client_maxconn connections at once from one client address.
    stick-table type ip size 100k expire 60s store conn_cur
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc0_conn_cur gt {settings.client_maxconn} }}
    http-request deny deny_status 413 if {{ req.hdr_val(content-length) gt {MAX_BODY} }}
    # HTTP/1.1 requires a Host header (RFC 9112, 3.2).
    http-request deny deny_status 400 if {{ req.ver 1.1 }} !{{ req.hdr(host) -m found }}
{rate_rules}
    # Which server software answered is nobody's business.
    http-response del-header Server
    # Connection failures are always retried; a request that reached a
    # server is replayed only if its method is idempotent.
    http-request disable-l7-retry if !{{ method {methods} }}
    # JSON and the page's files, gzipped for clients that accept it.
{compression}
    stats enable
    stats uri {STATS_URI}
    stats realm MicroFlack
    stats auth {_quote(f'{settings.stats_user}:{settings.stats_password}')}
"""


def render(tree, settings):
    """haproxy.cfg for a /services tree: a :class:`Rendered` with the text
    and the warnings about skipped entries."""
    warnings = []
    services = read_services(tree, warnings.append)
    rate_rules, rate_tables = _rate_limits(settings)
    lines = [
        '# Generated by microflack_admin/tools/lb_watcher.py from the etcd',
        '# /services tree. Do not edit: it is rewritten on every change.',
        _global_and_defaults(settings, rate_rules).rstrip('\n'),
    ]
    routed = sorted((s for s in services if s.location != '/'),
                    key=lambda s: (-len(s.location), s.location))
    if routed:
        lines.append('')
        lines.append('    # Longest locations first; a location matches '
                     'itself and what lies below it.')
    for service in routed:
        acl = f'is_{service.name}'
        lines.append(f'    acl {acl} path {service.location}')
        lines.append(f'    acl {acl} path_beg {service.location}/')
        lines.append(f'    use_backend {service.backend} if {acl}')
    default = [s for s in services if s.location == '/']
    if default:
        lines.append(f'    default_backend {default[0].backend}')
    lines += rate_tables
    for service in services:
        lines.append('')
        lines.append(f'backend {service.backend}')
        lines.append(f'    balance {service.balance}')
        if service.timeout_server is not None:
            lines.append(f'    timeout server {service.timeout_server}s')
        if service.maxconn is not None:
            lines.append('    # More requests than this per server wait in '
                         'the queue (timeout queue).')
            lines.append(f'    default-server maxconn {service.maxconn}')
        if not service.servers:
            lines.append('    # No usable instance: the backend stays, so its '
                         'paths answer 503')
            lines.append('    # (which the inter-service client retries) '
                         'instead of reaching the UI.')
        for server in service.servers:
            lines.append(f'    {server.line()}')
    return Rendered('\n'.join(lines) + '\n', warnings)


def server_definitions(text):
    """{(backend, server): rest of the server line} in a rendered config."""
    servers, backend = {}, None
    for line in text.splitlines():
        words = line.split()
        if not words or line[0] == '#':
            continue
        if not line[0].isspace():
            backend = words[1] if words[0] == 'backend' and len(words) > 1 \
                else None
        elif backend and words[0] == 'server' and len(words) > 2:
            servers[(backend, words[1])] = ' '.join(words[2:])
    return servers


def _parse_state(state):
    """The lines of ``show servers state`` (or a state file) after its
    version line, each with its row as a dict of the columns (None for the
    column comment); None if it is not in the format HAProxy writes (1)."""
    lines = state.splitlines()
    if not lines or lines[0].strip() != '1':
        return None
    parsed, columns = [], []
    for line in lines[1:]:
        if line.startswith('#'):
            columns = line[1:].split()
            parsed.append((line, None))
            continue
        values = line.split()
        if values and columns:
            parsed.append((line, dict(zip(columns, values, strict=False))))
    return parsed


def server_state_rows(state):
    """The servers of ``show servers state``, as dicts of its columns."""
    return [row for _, row in _parse_state(state) or () if row is not None]


def stale_servers(text, state):
    """The servers in which what HAProxy runs (``show servers state``)
    differs from the configuration ``text``: a server missing, one too
    many, or with another port, address or weight. Sorted (backend,
    server) pairs; empty when HAProxy serves exactly ``text``'s servers."""
    expected = server_definitions(text)
    running = {(row.get('be_name'), row.get('srv_name')): row
               for row in server_state_rows(state)}
    stale = set(expected) ^ set(running)
    for key in set(expected) & set(running):
        definition, row = expected[key], running[key]
        weight = definition.split()[-1] if ' weight ' in f' {definition}' \
            else '1'
        if not _state_matches(row, definition) \
                or row.get('srv_uweight') != weight:
            stale.add(key)
    return sorted(stale)


def filter_server_state(state, old_text, new_text):
    """Keep the saved state (``show servers state``) of the servers whose
    definition the new configuration keeps unchanged.

    HAProxy applies a saved address and port over the configuration's, so
    the state of a server whose address (or weight) changed is dropped;
    it starts afresh from the new configuration.
    """
    old, new = server_definitions(old_text), server_definitions(new_text)
    parsed = _parse_state(state)
    if parsed is None:
        return ''
    kept = ['1']
    for line, row in parsed:
        if row is None:
            kept.append(line)
            continue
        key = (row.get('be_name'), row.get('srv_name'))
        if key in new and old.get(key) == new[key] \
                and _state_matches(row, new[key]):
            kept.append(line)
    return '\n'.join(kept) + '\n'


def _state_matches(row, definition):
    """Whether a saved state line holds the address of the definition (a
    state saved by an older worker during a reload may not)."""
    host, _, port = definition.split()[0].rpartition(':')
    if row.get('srv_port') != port:
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True  # a name: the saved address is what it resolved to
    return row.get('srv_addr') == host
