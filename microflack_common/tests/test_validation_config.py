import pytest
from flask import Flask

from microflack_common import config
from microflack_common.etcd_client import parse_etcd_urls
from microflack_common.testing import ApiClient
from microflack_common.validation import (
    bool_arg,
    int_arg,
    json_object,
    string_field,
)


@pytest.fixture
def client(app):
    @app.route('/echo', methods=['POST'])
    def echo():
        data = json_object()
        return {'name': string_field(data, 'name', max_length=5, strip=True),
                'note': string_field(data, 'note', required=False)}

    @app.route('/args')
    def args():
        return {'n': int_arg('n', 0), 'b': bool_arg('b')}

    return ApiClient(app)


@pytest.mark.parametrize('raw', ['not json', '[1, 2]', '"text"', '3', 'null',
                                 '{"name": 5}', '{"name": ""}',
                                 '{"name": "   "}', '{"name": "toolong"}',
                                 '{}', '{"name": "ok", "note": 7}',
                                 '{"name": "\\ud800"}'])
def test_bad_bodies(client, raw):
    rv = client.post('/echo', raw=raw)
    assert rv.status == 400
    assert isinstance(rv.json['error'], str)


@pytest.mark.parametrize('raw', ['[' * 5000 + ']' * 5000,
                                 '{"a":' * 5000 + '1' + '}' * 5000,
                                 '{"name": ' + '[' * 3000 + ']' * 3000 + '}'])
def test_deeply_nested_bodies_are_400(client, raw):
    """Issue 19, finding 3: JSON nested past Python's recursion limit
    answered 500 (RecursionError); it is a bad body like any other."""
    rv = client.post('/echo', raw=raw)
    assert rv.status == 400
    assert 'nested' in rv.json['error']


def test_good_body(client):
    rv = client.post('/echo', {'name': ' bob '})
    assert rv.json == {'name': 'bob', 'note': None}


@pytest.mark.parametrize('query', ['n=abc', 'n=1.5', 'n=99999999999999999999',
                                   'b=maybe'])
def test_bad_args(client, query):
    rv = client.get('/args?' + query)
    assert rv.status == 400


def test_good_args(client):
    assert client.get('/args?n=-3&b=1').json == {'n': -3, 'b': True}
    assert client.get('/args').json == {'n': 0, 'b': None}


def test_parse_etcd_urls():
    assert parse_etcd_urls('http://a:2379, https://b:2380/') == \
        ['http://a:2379', 'https://b:2380']


@pytest.mark.parametrize('value', [None, '', ' ', 'a:2379', 'http://a',
                                   'ftp://a:1', 'http://a:2379/v2',
                                   'http://a:99999', 'http://a:2379,'])
def test_malformed_etcd_urls_name_the_variable(value):
    with pytest.raises(config.ConfigError, match='ETCD'):
        parse_etcd_urls(value)


def test_select_config(monkeypatch):
    classes = {'dev': 1, 'prod': 2}
    monkeypatch.setenv('FLASK_CONFIG', 'prod')
    assert config.select(classes) == 2
    monkeypatch.delenv('FLASK_CONFIG')
    assert config.select(classes) == 1
    with pytest.raises(config.ConfigError, match='FLASK_CONFIG'):
        config.select(classes, 'staging')


def test_prod_requires_secrets():
    class Prod(config.ProdConfig):
        SERVICE_NAME = 'x'
        SECRET_KEY = None
        JWT_SECRET_KEY = None
        ETCD = None
    app = Flask('x')
    app.config.from_object(Prod)
    with pytest.raises(config.ConfigError) as error:
        from microflack_common.service import init_service
        init_service(app)
    assert 'JWT_SECRET_KEY' in str(error.value)
    assert 'ETCD' in str(error.value)


def test_env_int(monkeypatch):
    monkeypatch.setenv('SOME_INT', 'x')
    with pytest.raises(config.ConfigError, match='SOME_INT'):
        config.env_int('SOME_INT', 1)
    monkeypatch.setenv('SOME_INT', '7')
    assert config.env_int('SOME_INT', 1) == 7


def test_request_size_limit(app):
    app.config['MAX_CONTENT_LENGTH'] = 100

    @app.route('/big', methods=['POST'])
    def big():
        return json_object()
    rv = ApiClient(app).post('/big', {'x': 'y' * 200})
    assert rv.status == 413
    assert rv.json['error']


# -- secrets from a file (issue 19, finding 10: a container's secrets are
# not in its environment) --

def test_secrets_come_from_the_file_secrets_file_names(tmp_path, monkeypatch):
    from microflack_common.config import load_secrets_file
    secrets = tmp_path / 'secrets.env'
    secrets.write_text('# a comment\nJWT_SECRET_KEY=j=k\n\n'
                       'DATABASE_URL=mysql://u:p@h/d\nSECRET_KEY=from-file\n')
    # An environment of its own, undone after the test.
    environ = {'SECRET_KEY': 'from-the-environment',
               'SECRETS_FILE': str(secrets)}
    monkeypatch.setattr(config.os, 'environ', environ)
    load_secrets_file()
    assert environ['JWT_SECRET_KEY'] == 'j=k'
    assert environ['DATABASE_URL'] == 'mysql://u:p@h/d'
    assert environ['SECRET_KEY'] == 'from-the-environment'


@pytest.mark.parametrize('text', [None, 'not a setting\n', 'A B=1\n'])
def test_a_secrets_file_that_cannot_be_read_is_a_config_error(tmp_path,
                                                              text):
    from microflack_common.config import ConfigError, load_secrets_file
    path = tmp_path / 'secrets.env'
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match='SECRETS_FILE') as raised:
        load_secrets_file(str(path))
    assert 'B=1' not in str(raised.value)
