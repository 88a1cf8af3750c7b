"""What the service module sets up for every worker process."""
import subprocess
import sys

from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface

from microflack_common.config import TestConfig
from microflack_common.service import init_service
from microflack_common.testing import RecordingPusher


def test_the_idna_codec_is_loaded_with_the_service_module():
    """Werkzeug encodes every request's host with the idna codec; its
    first, lazy import must not happen in several request threads at once
    (a failed lookup is cached for good: every later request is a 500)."""
    code = ('import sys, microflack_common.service; '
            'print("encodings.idna" in sys.modules)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == 'True', result.stderr


def test_rest_services_neither_read_nor_write_session_cookies(app):
    """A REST service knows its caller by the token of each request: it
    does not unsign a session cookie it is sent, and never sets one."""
    seen = []

    @app.get('/whoami')
    def whoami():
        seen.append(dict(session))
        return {'ok': True}

    client = app.test_client()
    # A valid signed cookie, as a service with cookie sessions would set.
    with app.test_request_context():
        cookie = SecureCookieSessionInterface().get_signing_serializer(app) \
            .dumps({'user': 'mallory'})
    client.set_cookie('session', cookie)
    response = client.get('/whoami')
    assert response.status_code == 200
    assert seen == [{}]
    assert 'Set-Cookie' not in response.headers


def test_services_may_keep_cookie_sessions(fake_etcd):
    """socketio does: Flask-SocketIO starts a connection's session from
    Flask's."""
    class WithSessions(TestConfig):
        SERVICE_NAME = 'sample'
        COOKIE_SESSIONS = True

    app = Flask('sample')
    app.config.from_object(WithSessions)
    init_service(app, etcd=fake_etcd, pusher=RecordingPusher())

    @app.get('/login')
    def login():
        session['user'] = 'alice'
        return {'ok': True}

    response = app.test_client().get('/login')
    assert response.status_code == 200
    assert 'session=' in response.headers['Set-Cookie']
