"""A database connection lost under a request (issue 15, finding 7): the
work is run again on a fresh connection where nothing can happen twice,
otherwise the client gets 503 JSON with Retry-After, never a 500 or an HTML
page. SQLite stands in for the server: closing the driver's connection
under the pool is, to SQLAlchemy, a lost connection (the services' MariaDB
runs kill real connections)."""
import pytest
import sqlalchemy as sa
from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.pool import QueuePool

from microflack_common.config import TestConfig
from microflack_common.database import (
    PreparedRead,
    init_database,
    retry_on_lost_connection,
)
from microflack_common.service import init_service
from microflack_common.testing import FakeEtcd, RecordingPusher


@pytest.fixture
def app(tmp_path):
    db = SQLAlchemy()

    class Item(db.Model):
        id = sa.Column(sa.Integer, primary_key=True)
        name = sa.Column(sa.String(20), nullable=False)

    class Config(TestConfig):
        SERVICE_NAME = 'sample'
        SQLALCHEMY_DATABASE_URI = f"sqlite:///{tmp_path / 'items.db'}"
        # One pooled connection: the one the test breaks is the next used.
        SQLALCHEMY_ENGINE_OPTIONS = {'poolclass': QueuePool, 'pool_size': 1,
                                     'max_overflow': 0}

    app = Flask('sample')
    app.config.from_object(Config)
    init_service(app, etcd=FakeEtcd(), pusher=RecordingPusher())
    init_database(app, db)
    names = PreparedRead(sa.select(Item.name).order_by(Item.id))
    runs = []

    def add(name):
        db.session.add(Item(name=name))
        db.session.commit()

    @app.post('/items/<name>')
    @retry_on_lost_connection
    def new_item(name):
        runs.append(name)
        if len(runs) == 1 and app.config.get('BREAK_BEFORE_COMMIT'):
            break_connections(app)
        add(name)
        return jsonify(name=name), 201

    @app.post('/two/<name>')
    @retry_on_lost_connection
    def two_items(name):
        """Commits, then loses the connection: not run again."""
        runs.append(name)
        add(name)
        break_connections(app)
        add(name + '2')
        return jsonify(name=name), 201

    @app.get('/count')
    def count():
        """Not decorated: a lost connection is still a JSON 503."""
        return jsonify(count=db.session.scalar(sa.select(sa.func.count(Item.id))))

    @app.get('/lost-at-the-end')
    def lost_at_the_end():
        """The connection dies after the view's work, in its transaction:
        the rollback at the end of the request fails."""
        count = db.session.scalar(sa.select(sa.func.count(Item.id)))
        db.session.connection().connection.dbapi_connection.close()
        return jsonify(count=count)

    @app.get('/names')
    def list_names():
        return jsonify(names=names.scalars())

    with app.app_context():
        db.create_all()
    app.runs = runs
    app.db = db
    app.item = Item
    return app


def break_connections(app):
    """Close the driver's connection that the pool holds, under SQLAlchemy."""
    with app.app_context():
        engine = app.db.engine
    with engine.connect() as connection:
        connection.exec_driver_sql('SELECT 1')
        dbapi_connection = connection.connection.dbapi_connection
    dbapi_connection.close()


def stored(app):
    with app.app_context():
        return app.db.session.scalars(sa.select(app.item.name)
                                      .order_by(app.item.id)).all()


def assert_unavailable(response):
    assert response.status_code == 503
    assert response.is_json and 'database' in response.json['error']
    assert response.headers['Retry-After'] == '1'


def test_a_write_is_run_again_on_a_new_connection(app):
    client = app.test_client()
    break_connections(app)
    response = client.post('/items/one')
    assert response.status_code == 201, response.data
    assert app.runs == ['one', 'one']
    assert stored(app) == ['one']
    # And the next request finds a working pool.
    assert client.post('/items/two').status_code == 201
    assert stored(app) == ['one', 'two']


def test_a_connection_lost_inside_the_view_is_retried_too(app):
    app.config['BREAK_BEFORE_COMMIT'] = True
    response = app.test_client().post('/items/one')
    assert response.status_code == 201, response.data
    assert stored(app) == ['one']


def test_after_a_commit_the_client_is_told_to_try_again(app):
    response = app.test_client().post('/two/a')
    assert_unavailable(response)
    assert app.runs == ['a']        # not run twice: 'a' is stored once
    assert stored(app) == ['a']


def test_an_undecorated_view_answers_503_json(app):
    client = app.test_client()
    break_connections(app)
    assert_unavailable(client.get('/count'))
    assert client.get('/count').json == {'count': 0}


def test_a_prepared_read_reads_again(app):
    client = app.test_client()
    client.post('/items/one')
    break_connections(app)
    response = client.get('/names')
    assert response.status_code == 200, response.data
    assert response.json == {'names': ['one']}


def test_a_database_that_cannot_be_reached_answers_503_json(tmp_path):
    db = SQLAlchemy()

    class Config(TestConfig):
        SERVICE_NAME = 'sample'
        SQLALCHEMY_DATABASE_URI = \
            f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}"

    app = Flask('sample')
    app.config.from_object(Config)
    init_service(app, etcd=FakeEtcd(), pusher=RecordingPusher())
    init_database(app, db)

    @app.get('/')
    @retry_on_lost_connection
    def index():
        return jsonify(one=db.session.scalar(sa.text('SELECT 1')))

    assert_unavailable(app.test_client().get('/'))


def test_a_rollback_that_fails_at_the_end_of_a_request_is_no_error(app):
    """The WSGI server would answer its HTML 500 page for an exception in
    a teardown; the response already made stands."""
    client = app.test_client()
    response = client.get('/lost-at-the-end')
    assert response.status_code == 200 and response.json == {'count': 0}
    assert client.get('/count').json == {'count': 0}
