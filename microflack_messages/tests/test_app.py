"""The app's wiring: schema from the migrations, settings, entry points."""
import importlib
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade

from microflack_common.database import PreparedRead, engine_options
from microflack_common.testing import drop_pooled_connections
from microflack_messages import app as app_module
from microflack_messages import config, tasks
from microflack_messages.models import db


def test_models_match_migrations(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={'compare_type': True})
        assert compare_metadata(context, db.metadata) == []


def test_database_is_at_the_latest_migration(app):
    script = ScriptDirectory(app_module.MIGRATIONS)
    with app.app_context(), db.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    assert current == script.get_current_head()


def test_migrations_downgrade_and_upgrade(app):
    with app.app_context():
        downgrade(revision='base')
        assert 'messages' not in sa.inspect(db.engine).get_table_names()
        upgrade()
        inspector = sa.inspect(db.engine)
        assert 'messages' in inspector.get_table_names()
        indexed = {tuple(index['column_names'])
                   for index in inspector.get_indexes('messages')}
        assert {('user_id',), ('updated_at',)} <= indexed


def test_settings(app):
    assert app.config['SERVICE_NAME'] == 'messages'
    assert app.config['SERVICE_URL'] == '/api/messages'
    assert app.config['VERSION'] == (
        Path(__file__).parent.parent / 'VERSION').read_text().strip()
    for name, value in {
            'MAX_MESSAGE_LENGTH': 10000, 'LINK_CONNECT_TIMEOUT': 3,
            'LINK_READ_TIMEOUT': 5, 'LINK_MAX_BYTES': 524288,
            'LINK_MAX_PER_MESSAGE': 5, 'LINK_EXPANSION_WORKERS': 4}.items():
        assert app.config[name] == value, name
    assert config.Config.ALLOW_PRIVATE_LINKS is False


def test_database_urls():
    assert config.DevConfig.SQLALCHEMY_DATABASE_URI.startswith('sqlite:///')
    assert config.DevConfig.SQLALCHEMY_DATABASE_URI.endswith(
        'microflack_messages/messages.sqlite')
    assert engine_options(config.TestConfig.SQLALCHEMY_DATABASE_URI) == \
        config.TestConfig.SQLALCHEMY_ENGINE_OPTIONS
    assert 'DATABASE_URL' in config.ProdConfig.REQUIRED_SETTINGS


def test_connections_the_server_dropped_are_replaced(app, client, token):
    """MariaDB ended the pooled connections (a restart, its wait_timeout):
    once they sat idle, the next requests get working ones."""
    with app.app_context():
        if db.engine.dialect.name != 'mysql':
            pytest.skip('needs MariaDB: runs in the messages-mariadb suite')
        assert client.get('/api/messages').status == 200
        assert drop_pooled_connections(db) >= 1
    time.sleep(app.config['DB_PING_AFTER_IDLE'] + 0.1)
    for _ in range(3):
        assert client.get('/api/messages').status == 200
    assert client.post('/api/messages', {'source': 'still here'},
                       token=token(1)).status == 201


def test_connections_lost_just_before_use_are_replaced_at_once(app, client,
                                                              token):
    """MariaDB ended the pooled connections a moment before a request uses
    them (too soon for the idle ping): each request still answers, on a
    new connection, and each write is stored once (issue 15, finding 7)."""
    with app.app_context():
        if db.engine.dialect.name != 'mysql':
            pytest.skip('needs MariaDB: runs in the messages-mariadb suite')
    posted = client.post('/api/messages', {'source': 'first'}, token=token(1))
    assert posted.status == 201
    url = posted.headers['Location']
    requests = [
        lambda: client.get('/api/messages'),
        lambda: client.get('/api/messages?limit=5'),
        lambda: client.get(url),
        lambda: client.post('/api/messages', {'source': 'second'},
                            token=token(1)),
        lambda: client.put(url, {'source': 'first, edited'}, token=token(1)),
    ]
    for send in requests:
        assert client.get('/api/messages').status == 200    # pools filled
        with app.app_context():
            assert drop_pooled_connections(db) >= 1
        response = send()
        assert response.status in (200, 201, 204), response
    sources = [m['source'] for m in client.get_json('/api/messages')['messages']]
    assert sorted(sources) == ['first, edited', 'second']


def test_settings_from_the_environment():
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv('MAX_MESSAGE_LENGTH', '20')
            env.setenv('LINK_READ_TIMEOUT', '0.5')
            env.setenv('ALLOW_PRIVATE_LINKS', 'true')
            env.setenv('DATABASE_URL', 'mysql+pymysql://u:p@127.0.0.1/x')
            reloaded = importlib.reload(config)
        assert reloaded.Config.MAX_MESSAGE_LENGTH == 20
        assert reloaded.Config.LINK_READ_TIMEOUT == 0.5
        assert reloaded.DevConfig.ALLOW_PRIVATE_LINKS is True
        assert reloaded.TestConfig.ALLOW_PRIVATE_LINKS is False
        assert reloaded.ProdConfig.SQLALCHEMY_DATABASE_URI == \
            'mysql+pymysql://u:p@127.0.0.1/x'
        assert reloaded.ProdConfig.SQLALCHEMY_ENGINE_OPTIONS == {
            'pool_recycle': 3600, 'connect_args': {'ssl_disabled': True}}
    finally:
        importlib.reload(config)


def test_background_runner_attached(app):
    runner = tasks.background(app)
    assert isinstance(runner, tasks.BackgroundTasks)
    assert runner.workers == 4
    assert not runner.stopping.is_set()


def test_gunicorn_worker_exit_shuts_down_the_runner(app):
    other = app_module.create_app(config.TestConfig)
    from microflack_common import gunicorn_config

    class Worker:
        wsgi = other
    gunicorn_config.worker_exit(None, Worker())
    assert tasks.background(other).stopping.is_set()
    assert not tasks.background(app).stopping.is_set()


SESSION_COUNTERS = PreparedRead(sa.text(
    "SELECT CONNECTION_ID(), "
    "(SELECT VARIABLE_VALUE FROM information_schema.session_status "
    " WHERE VARIABLE_NAME = 'COM_SELECT'), "
    "(SELECT VARIABLE_VALUE FROM information_schema.session_status "
    " WHERE VARIABLE_NAME = 'COM_ROLLBACK')"))


def test_lists_are_read_without_a_transaction(app, client, add_message):
    """GET /api/messages reads on a pool of autocommit connections: it
    sees a message committed a moment ago, and returning its connection
    sends MariaDB no ROLLBACK (one round trip per read saved)."""
    with app.app_context():
        if db.engine.dialect.name != 'mysql':
            pytest.skip('needs MariaDB: runs in the messages-mariadb suite')
        assert client.get('/api/messages').status == 200

        def counters():
            """The reads' connection: its id, SELECTs and ROLLBACKs so far
            (one statement, itself a SELECT)."""
            [row] = SESSION_COUNTERS.rows()
            return tuple(int(value) for value in row)

        connection_id, selects, rollbacks = counters()
        for n in range(3):
            message_id = add_message(f'fresh {n}')
            listed = client.get('/api/messages').json['messages']
            assert listed[-1]['id'] == message_id
        # The same pooled connection served the three lists (and counters()
        # itself), and rolled nothing back.
        assert counters() == (connection_id, selects + 1 + 3, rollbacks)


def test_connections_to_this_host_make_no_tls_context(app):
    """PyMySQL would build an SSL context for every connection (0.8 MiB
    each) to a server on this host; both pools' connections go without."""
    with app.app_context():
        if db.engine.dialect.name != 'mysql':
            pytest.skip('needs MariaDB: runs in the messages-mariadb suite')
        reads, _ = app.extensions['microflack_reads']
        for pool in (db.engine.pool, reads):
            connection = pool.connect()
            try:
                assert connection.dbapi_connection.ssl is False
                assert not hasattr(connection.dbapi_connection, 'ctx')
            finally:
                connection.close()
