"""The app's wiring: migrations that match the models, configuration and
the WSGI entry point."""
import importlib
import sys
import time

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from microflack_common.config import ConfigError
from microflack_common.database import engine_options
from microflack_common.testing import drop_pooled_connections
from microflack_users.app import create_app
from microflack_users.config import Config, ProdConfig, TestConfig
from microflack_users.models import db


def test_models_and_migrations_agree(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() is not None
        assert compare_metadata(context, db.metadata) == []


def test_migrations_go_down_and_up_again(app, add_user):
    add_user('susan')
    with app.app_context():
        downgrade(revision='base')
        assert 'users' not in sa.inspect(db.engine).get_table_names()
        upgrade()
        assert 'users' in sa.inspect(db.engine).get_table_names()


def test_engine_options():
    assert engine_options(TestConfig.SQLALCHEMY_DATABASE_URI) == \
        TestConfig.SQLALCHEMY_ENGINE_OPTIONS


def test_connections_the_server_dropped_are_replaced(app, client, add_user,
                                                     token):
    """MariaDB ended the pooled connections (a restart, its wait_timeout):
    once they sat idle, the next requests get working ones."""
    if not TestConfig.SQLALCHEMY_DATABASE_URI.startswith('mysql'):
        pytest.skip('needs MariaDB: runs in the users-mariadb suite')
    user_id = add_user('pooled')
    assert client.get('/api/users', token=token(user_id)).status == 200
    with app.app_context():
        assert drop_pooled_connections(db) >= 1
    time.sleep(app.config['DB_PING_AFTER_IDLE'] + 0.1)
    for _ in range(3):
        assert client.get('/api/users', token=token(user_id)).status == 200


def test_connections_lost_just_before_use_are_replaced_at_once(
        app, client, add_user, token, rows):
    """MariaDB ended the pooled connections a moment before a request uses
    them (too soon for the idle ping): each request still answers, on a
    new connection, and each write is stored once (issue 15, finding 7)."""
    if not TestConfig.SQLALCHEMY_DATABASE_URI.startswith('mysql'):
        pytest.skip('needs MariaDB: runs in the users-mariadb suite')
    user_id = add_user('pooled', password='dog')
    requests = [
        lambda: client.get('/api/users', token=token(user_id)),
        lambda: client.get(f'/api/users/{user_id}', token=token(user_id)),
        lambda: client.get('/api/users/me', basic=('pooled', 'dog')),
        lambda: client.post('/api/users', {'nickname': 'newcomer',
                                           'password': 'cat'}),
        lambda: client.put(f'/api/users/{user_id}', {'nickname': 'renamed'},
                           token=token(user_id)),
        lambda: client.put('/api/users/me', token=token(user_id)),
        lambda: client.delete('/api/users/me', token=token(user_id)),
    ]
    for send in requests:
        assert client.get('/api/users', token=token(user_id)).status == 200
        with app.app_context():
            assert drop_pooled_connections(db) >= 1
        response = send()
        assert response.status in (200, 201, 204), response
    assert sorted(row['nickname'] for row in rows()) == ['newcomer', 'renamed']


def test_settings_defaults():
    assert Config.USERS_OFFLINE_AFTER == 60
    assert Config.USERS_SWEEP_INTERVAL == 5
    assert Config.SERVICE_NAME == 'users'
    if Config.DATABASE_URL is None:     # dev default: a file beside the code
        assert Config.SQLALCHEMY_DATABASE_URI.startswith('sqlite:///')
        assert Config.SQLALCHEMY_DATABASE_URI.endswith('/users.sqlite')


def test_production_requires_a_database_url():
    class Prod(ProdConfig):
        SECRET_KEY = 'x'
        JWT_SECRET_KEY = 'y' * 32
        ETCD = 'http://127.0.0.1:2379'
        DATABASE_URL = None
    with pytest.raises(ConfigError, match='DATABASE_URL'):
        create_app(Prod)


def test_config_selected_by_flask_config(monkeypatch):
    monkeypatch.setenv('FLASK_CONFIG', 'test')
    app = create_app()
    assert app.config['TESTING'] is True
    assert app.config['SQLALCHEMY_DATABASE_URI'] == \
        TestConfig.SQLALCHEMY_DATABASE_URI


def test_wsgi_starts_the_sweep(monkeypatch):
    monkeypatch.setenv('FLASK_CONFIG', 'test')
    sys.modules.pop('wsgi', None)
    wsgi = importlib.import_module('wsgi')
    try:
        assert wsgi.app.config['SERVICE_NAME'] == 'users'
        assert wsgi.sweep.running
        assert wsgi.sweep.app is wsgi.app
    finally:
        wsgi.sweep.stop()
        sys.modules.pop('wsgi', None)
    assert not wsgi.sweep.running
