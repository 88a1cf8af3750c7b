import pytest

from microflack_common.auth import (
    current_user_id,
    token_auth,
    token_optional_auth,
)
from microflack_common.testing import ApiClient, make_token

CHALLENGE = 'Bearer realm="Authentication Required"'


@pytest.fixture
def client(app):
    @app.route('/private')
    @token_auth.login_required
    def private():
        return {'user_id': current_user_id()}

    @app.route('/public')
    @token_optional_auth.login_required
    def public():
        return {'user_id': current_user_id()}

    return ApiClient(app)


def test_token_required(client):
    rv = client.get('/private')
    assert rv.status == 401
    assert rv.json == {'error': 'authentication required'}
    assert rv.headers['WWW-Authenticate'] == CHALLENGE


def test_valid_token(app, client):
    rv = client.get('/private', token=make_token(app, 3))
    assert rv.status == 200
    assert rv.json == {'user_id': 3}


@pytest.mark.parametrize('header', [
    'Bearer', 'Bearer ', 'Bearer garbage', 'Basic dXNlcjpwYXNz', 'Basic',
    'garbage', 'Bearer a.b.c', 'Token abc',
])
def test_malformed_headers(client, header):
    for url in ('/private', '/public'):
        rv = client.get(url, headers={'Authorization': header})
        assert rv.status == 401, (url, header)
        assert rv.headers['WWW-Authenticate'] == CHALLENGE
        assert rv.json['error']


def test_optional_allows_anonymous(client):
    rv = client.get('/public')
    assert rv.status == 200
    assert rv.json == {'user_id': None}


def test_optional_with_token(app, client):
    rv = client.get('/public', token=make_token(app, 9))
    assert rv.json == {'user_id': 9}


def test_optional_rejects_expired_token(app, client):
    rv = client.get('/public', token=make_token(app, 9, expires_in=-5))
    assert rv.status == 401


def test_revoked_token_rejected_everywhere(app, client, fake_etcd):
    token = make_token(app, 4)
    fake_etcd.put_expiring('/revoked-tokens/' + token, '', 100)
    assert client.get('/private', token=token).status == 401
    assert client.get('/public', token=token).status == 401


def test_token_callbacks(app, client):
    seen = []
    app.extensions['microflack'].on_token_verified(
        lambda claims: seen.append(claims['user_id']))
    client.get('/private', token=make_token(app, 5))
    client.get('/public')
    assert seen == [5]


def test_etcd_down_still_verifies_signature(app, client, fake_etcd, caplog):
    fake_etcd.down = True
    assert client.get('/private', token=make_token(app, 2)).status == 200
    assert client.get('/private', token='bad').status == 401
    assert 'cannot check token revocations' in caplog.text


def test_errors_are_json(client):
    rv = client.get('/nowhere')
    assert rv.status == 404
    assert rv.json == {'error': 'not found'}
    rv = client.post('/private')
    assert rv.status == 405
    assert rv.json == {'error': 'method not allowed'}
    assert 'GET' in rv.headers['Allow']


def test_unexpected_exception_is_json_500(app, caplog):
    @app.route('/boom')
    def boom():
        raise RuntimeError('kaboom')
    app.config['PROPAGATE_EXCEPTIONS'] = False
    rv = ApiClient(app).get('/boom')
    assert rv.status == 500
    assert rv.json == {'error': 'internal server error'}
    assert 'kaboom' in caplog.text


def test_health(client):
    rv = client.get('/health')
    assert rv.json == {'status': 'ok', 'service': 'sample', 'version': 'test',
                       'instance': 'sample_vtest_' +
                       rv.json['instance'].split('_', 2)[2]}


def test_shutdown_callbacks_all_run(app, caplog):
    platform = app.extensions['microflack']
    ran = []
    platform.on_shutdown(lambda: ran.append('first'))
    platform.on_shutdown(lambda: 1 / 0)
    platform.on_shutdown(lambda: ran.append('last'))
    platform.shutdown()
    assert ran == ['first', 'last']
    assert 'shutdown callback failed' in caplog.text


def test_gunicorn_hooks_reach_the_app_of_their_worker(app):
    from microflack_common import gunicorn_config

    platform = app.extensions['microflack']
    started, stopped = [], []
    platform.on_worker_start(started.append)
    platform.on_shutdown(lambda: stopped.append(True))

    class Worker:
        wsgi = app
    worker = Worker()
    gunicorn_config.post_worker_init(worker)
    assert started == [worker]
    gunicorn_config.worker_exit(None, worker)
    assert stopped == [True]
    # A worker serving another app: nothing to call.
    gunicorn_config.post_worker_init(object())
    gunicorn_config.worker_exit(None, object())
