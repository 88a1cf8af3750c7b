"""Helpers every service's tests use.

- :class:`ApiClient`: a JSON test client with basic and token auth helpers.
- :func:`make_token`: a token signed with the app's key.
- :class:`FakeEtcd`: an in-memory stand-in for the registry (unit tests only;
  integration tests use a real etcd).
- :class:`FakeServiceClient`: records inter-service calls and answers them
  from canned handlers (unit tests only).
- :class:`RecordingPusher`: collects ``updated_model`` pushes.
- :func:`migrate_test_database`, :func:`empty_tables`, :func:`reset_fakes`:
  a test database whose schema comes from the service's migrations, and a
  clean state between tests; :func:`insert_rows`: many rows at once;
  :func:`seeded_ids`: what a seed command made; :func:`query_plan`,
  :func:`tables_read`: how the database runs a query, and what it read.
- :class:`EtcdServer`, :func:`free_port`, :func:`wait_for_port`,
  :func:`wait_until`: real servers on loopback for integration tests.
- :func:`gunicorn_arbiter`, :func:`gunicorn_worker`: the installed
  gunicorn's master and worker objects, not running (for
  :mod:`.gunicorn_patches`).
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import time

from .etcd_client import EtcdError, EtcdKeyNotFound, Node
from .tokens import generate_token


def basic_auth_header(nickname, password):
    credentials = f'{nickname}:{password}'.encode()
    return 'Basic ' + base64.b64encode(credentials).decode()


def make_token(app, user_id, expires_in=3600):
    return generate_token(user_id, app.config['JWT_SECRET_KEY'], expires_in)


class ApiResponse:
    """A test response with ``status``, ``json`` and ``headers``."""

    def __init__(self, response):
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self.data = response.get_data()
        try:
            self.json = json.loads(self.data) if self.data else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f'<ApiResponse {self.status} {self.data[:200]!r}>'


class ApiClient:
    """Sends JSON requests to an app: ``client.post(url, body, token=...)``.

    ``token`` adds a Bearer header, ``basic=(nickname, password)`` a Basic
    one, ``headers`` anything else; ``raw`` sends a body as it is.
    """

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()

    def request(self, method, url, body=None, token=None, basic=None,
                headers=None, raw=None, content_type='application/json'):
        headers = dict(headers or {})
        if token is not None:
            headers['Authorization'] = f'Bearer {token}'
        if basic is not None:
            headers['Authorization'] = basic_auth_header(*basic)
        data = raw if raw is not None else (
            json.dumps(body) if body is not None else None)
        response = self.client.open(url, method=method, data=data,
                                    headers=headers,
                                    content_type=content_type)
        return ApiResponse(response)

    def get(self, url, **kwargs):
        return self.request('GET', url, **kwargs)

    def get_json(self, url, **kwargs):
        """The JSON of a GET that must answer 200."""
        rv = self.get(url, **kwargs)
        assert rv.status == 200, rv
        return rv.json

    def post(self, url, body=None, **kwargs):
        return self.request('POST', url, body, **kwargs)

    def put(self, url, body=None, **kwargs):
        return self.request('PUT', url, body, **kwargs)

    def delete(self, url, **kwargs):
        return self.request('DELETE', url, **kwargs)


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


def migrate_test_database(db):
    """Give the (app context's) test database exactly the schema of the
    service's migrations: a database kept from an earlier run may hold old
    tables, so everything is dropped first."""
    import sqlalchemy as sa
    from flask_migrate import upgrade

    leftovers = sa.MetaData()
    leftovers.reflect(bind=db.engine)
    leftovers.drop_all(bind=db.engine)
    upgrade()


def insert_rows(db, table, count, defaults, **columns):
    """Store ``count`` rows in one statement, quickly (no ORM, no push):
    each row is ``defaults`` (a function of the row's index 0..count-1)
    updated with ``columns``, values or functions of the index. Returns
    the new rows' ids, in the order stored."""
    import sqlalchemy as sa

    rows = []
    for index in range(count):
        row = defaults(index)
        for name, value in columns.items():
            row[name] = value(index) if callable(value) else value
        rows.append(row)
    last = db.session.scalar(sa.select(sa.func.max(table.c.id))) or 0
    db.session.execute(table.insert(), rows)
    db.session.commit()
    ids = db.session.scalars(sa.select(table.c.id).where(table.c.id > last)
                             .order_by(table.c.id)).all()
    assert len(ids) == count, 'someone else inserted rows meanwhile'
    return ids


def link_parts(url):
    """A link's path and its query parameters, as a dict."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    return parts.path, dict(parse_qsl(parts.query))


def seeded_ids(result):
    """The ids a seed command made, from its last line (``ids A-B``), as a
    range; the command (a Click test runner's result) must have succeeded."""
    from .seeding import parse_id_range

    assert result.exit_code == 0, result.output
    last = result.stdout.splitlines()[-1]
    assert last.startswith('ids '), last
    return parse_id_range(last.removeprefix('ids '))


def query_plan(db, statement, params):
    """How the (app context's) database runs a SELECT with these bind
    parameters: on MariaDB, ``ANALYZE FORMAT=JSON`` (it runs the query and
    counts the rows each table access really read, ``r_rows``), parsed; on
    SQLite, the steps of ``EXPLAIN QUERY PLAN`` as strings."""
    import sqlalchemy as sa

    dialect = db.engine.dialect
    sql = statement.params(**params).compile(
        dialect=dialect, compile_kwargs={'literal_binds': True}).string
    if dialect.name == 'mysql':
        plan = db.session.execute(sa.text('ANALYZE FORMAT=JSON ' + sql))
        return json.loads(plan.scalar())
    return [row[-1] for row in db.session.execute(
        sa.text('EXPLAIN QUERY PLAN ' + sql))]


def tables_read(plan):
    """The table accesses of a MariaDB plan (:func:`query_plan`), wherever
    they are nested."""
    if isinstance(plan, dict):
        if isinstance(plan.get('table'), dict):
            yield plan['table']
        for value in plan.values():
            yield from tables_read(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from tables_read(value)


def empty_tables(db):
    """Delete every row of the models' tables (alembic_version stays)."""
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


def drop_pooled_connections(db):
    """As a MariaDB restart or its ``wait_timeout`` would: the server ends
    every connection of the app's pool (from a connection of its own), and
    the pool finds out only when it next uses them. Returns how many."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    assert db.engine.pool.checkedin(), 'the pool holds no connection'
    killer = sa.create_engine(db.engine.url, poolclass=NullPool)
    try:
        with killer.connect() as connection:
            ids = connection.exec_driver_sql(
                'SELECT id FROM information_schema.processlist '
                'WHERE db = DATABASE() AND id <> CONNECTION_ID()').scalars().all()
            for connection_id in ids:
                connection.exec_driver_sql(f'KILL CONNECTION {int(connection_id)}')
    finally:
        killer.dispose()
    return len(ids)


def reset_fakes(app):
    """Forget what the app's fake registry and pusher hold."""
    platform = app.extensions['microflack']
    if isinstance(platform.etcd, FakeEtcd):
        platform.etcd.reset()
    if isinstance(platform.pusher, RecordingPusher):
        platform.pusher.pushes.clear()


def free_port(host='127.0.0.1'):
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout, interval=0.05):
    """Call ``predicate`` until it returns something true (returned) or
    ``timeout`` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def gunicorn_arbiter(**settings):
    """A master (Arbiter) of the installed gunicorn with ``settings``, set
    up as gunicorn sets it up, but not running."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class Application(BaseApplication):
        def load_config(self):
            for name, value in settings.items():
                self.cfg.set(name, value)

        def load(self):
            return lambda environ, start_response: []

    return Arbiter(Application())


def gunicorn_worker(arbiter):
    """A worker of ``arbiter``, as the master makes it before forking (the
    base class: importing some worker classes monkey patches the process)."""
    from gunicorn.workers.base import Worker

    return Worker(1, os.getpid(), [], arbiter.app, arbiter.timeout,
                  arbiter.cfg, arbiter.log)


def wait_for_port(port, host='127.0.0.1', timeout=10):
    def listening():
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            return False
    if not wait_until(listening, timeout):
        raise RuntimeError(f'nothing listens on {host}:{port}')


class EtcdServer:
    """A private single-node etcd (v2 API on) on loopback, with its data in
    ``data_dir``; can be stopped and started again."""

    def __init__(self, data_dir, binary=None):
        self.binary = binary or shutil.which('etcd') or (
            '/usr/bin/etcd' if os.access('/usr/bin/etcd', os.X_OK) else None)
        if self.binary is None:
            raise RuntimeError('etcd is not installed (setup-host.sh '
                               'installs etcd-server)')
        self.data_dir = str(data_dir)
        self.port, self.peer_port = free_port(), free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.process = None

    def start(self, timeout=15):
        import urllib3
        peer = f'http://127.0.0.1:{self.peer_port}'
        self.process = subprocess.Popen(
            [self.binary, '--enable-v2=true', '--name', 'test',
             '--data-dir', self.data_dir,
             '--listen-client-urls', self.url,
             '--advertise-client-urls', self.url,
             '--listen-peer-urls', peer,
             '--initial-advertise-peer-urls', peer,
             '--initial-cluster', f'test={peer}'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        http = urllib3.PoolManager(retries=False)

        def ready():
            try:
                return http.request('GET', self.url + '/v2/keys/',
                                    timeout=1).status == 200
            except urllib3.exceptions.HTTPError:
                return False
        if not wait_until(ready, timeout):
            self.stop()
            raise RuntimeError('etcd did not start')
        return self

    def stop(self, timeout=10):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
