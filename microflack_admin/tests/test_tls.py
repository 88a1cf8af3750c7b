"""HTTPS at the load balancer (issue 19, TLS): install/make-tls.sh's local
certificate authority and certificate, and the platform served over HTTPS
with its CA trusted (the REST API, Socket.IO over wss; the browser tests
load the chat page over HTTPS too)."""
import socket
import stat
import subprocess
import uuid

import requests
import socketio
from mfplatform import clean_environ

from conftest import ADMIN

MAKE_TLS = ADMIN / 'install' / 'make-tls.sh'


def make_tls(home, **settings):
    return subprocess.run([str(MAKE_TLS)], capture_output=True, text=True,
                          timeout=60,
                          env={**clean_environ(), 'MF_HOME': str(home),
                               'MICROFLACK_IP': '127.0.0.1', **settings})


def names_of(pem):
    out = subprocess.run(['openssl', 'x509', '-in', str(pem), '-noout',
                          '-ext', 'subjectAltName'], capture_output=True,
                         text=True, check=True).stdout
    return out.splitlines()[-1].strip()


def test_make_tls_makes_a_ca_and_a_certificate_once(tmp_path):
    first = make_tls(tmp_path)
    assert first.returncode == 0, first.stderr
    tls = tmp_path / 'tls'
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    for name in ('ca.key', 'lb.key', 'lb.pem'):
        assert stat.S_IMODE((tls / name).stat().st_mode) == 0o600, name
    assert 'IP Address:127.0.0.1' in names_of(tls / 'lb.pem')
    assert 'DNS:localhost' in names_of(tls / 'lb.pem')
    verified = subprocess.run(['openssl', 'verify', '-CAfile',
                               str(tls / 'ca.crt'), str(tls / 'lb.crt')],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    pem, ca = (tls / 'lb.pem').read_bytes(), (tls / 'ca.crt').read_bytes()
    again = make_tls(tmp_path)
    assert again.returncode == 0 and 'is current' in again.stderr
    assert (tls / 'lb.pem').read_bytes() == pem
    # Other names: a new certificate from the same CA.
    more = make_tls(tmp_path, TLS_NAMES='127.0.0.5,chat.example')
    assert more.returncode == 0, more.stderr
    assert (tls / 'ca.crt').read_bytes() == ca
    assert 'IP Address:127.0.0.5' in names_of(tls / 'lb.pem')
    assert 'DNS:chat.example' in names_of(tls / 'lb.pem')


def test_make_tls_takes_the_operators_certificate(tmp_path):
    assert make_tls(tmp_path / 'ca').returncode == 0
    own = tmp_path / 'ca' / 'tls' / 'lb.pem'
    result = make_tls(tmp_path / 'home', TLS_CERT=str(own))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'home' / 'tls' / 'lb.pem').read_bytes() == \
        own.read_bytes()
    assert not (tmp_path / 'home' / 'tls' / 'ca.key').exists()


def test_make_tls_refuses_bad_input(tmp_path):
    for settings, message in [
            ({'TLS_NAMES': 'a b'}, 'neither an IPv4 address nor a host name'),
            ({'TLS_CERT': str(tmp_path / 'none.pem')}, 'no such readable'),
            ({'TLS_CERT': str(MAKE_TLS)}, 'no PEM certificate')]:
        result = make_tls(tmp_path / 'home', **settings)
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
        assert 'Traceback' not in result.stderr
    usage = subprocess.run([str(MAKE_TLS), 'extra'], capture_output=True,
                           text=True, env={**clean_environ(),
                                           'MF_HOME': str(tmp_path)})
    assert usage.returncode != 0 and 'usage' in usage.stderr


# -- the platform over HTTPS ---------------------------------------------

def https_session(platform):
    session = requests.Session()
    session.trust_env = False
    session.verify = str(platform.ca_cert)
    return session


def test_the_api_over_https(platform):
    https = https_session(platform)
    nickname = f'tls_{uuid.uuid4().hex[:10]}'
    rv = https.post(f'{platform.lb_https}/api/users', timeout=10,
                    json={'nickname': nickname, 'password': 'pw'})
    assert rv.status_code == 201, rv.text
    rv = https.post(f'{platform.lb_https}/api/tokens', timeout=10,
                    auth=(nickname, 'pw'))
    assert rv.status_code == 200
    rv = https.get(f'{platform.lb_https}/api/messages?limit=1', timeout=10)
    assert rv.status_code == 200
    assert rv.headers['Strict-Transport-Security'].startswith('max-age=')
    # Without the platform's CA, a client refuses the certificate.
    untrusting = requests.Session()
    untrusting.trust_env = False
    try:
        untrusting.get(f'{platform.lb_https}/', timeout=10)
        raise AssertionError('a certificate nobody trusts was accepted')
    except requests.exceptions.SSLError:
        pass


def test_plain_http_from_outside_is_sent_to_https(platform):
    """From outside the platform's own addresses (127.0.0.200 here: the
    test platforms count 127.0.0.0/25 as their own) a plain HTTP request
    is redirected, method kept; the services' calls (from 127.0.0.1) are
    served over HTTP."""
    port = int(platform.lb.rsplit(':', 1)[1])
    with socket.create_connection(('127.0.0.1', port), timeout=10,
                                  source_address=('127.0.0.200', 0)) as sock:
        sock.sendall(b'POST /api/tokens?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                     b'Content-Length: 0\r\nConnection: close\r\n\r\n')
        answer = b''
        while chunk := sock.recv(65536):
            answer += chunk
    lines = answer.decode('latin-1').split('\r\n\r\n')[0].split('\r\n')
    headers = {name.lower(): value for name, _, value
               in (line.partition(': ') for line in lines[1:])}
    assert lines[0].split()[1] == '308', lines
    assert headers['location'] == f'{platform.lb_https}/api/tokens?x=1'
    rv = platform.http.get(f'{platform.lb}/api/messages?limit=1', timeout=10,
                           allow_redirects=False)
    assert rv.status_code == 200


def test_socketio_over_wss(platform):
    https = https_session(platform)
    nickname = f'wss_{uuid.uuid4().hex[:10]}'
    https.post(f'{platform.lb_https}/api/users', timeout=10,
               json={'nickname': nickname, 'password': 'pw'})
    token = https.post(f'{platform.lb_https}/api/tokens', timeout=10,
                       auth=(nickname, 'pw')).json()['token']
    client = socketio.Client(reconnection=False, http_session=https)
    pushed = []
    client.on('updated_model', lambda data: pushed.append(data))
    client.connect(platform.lb_https, transports=['websocket'],
                   socketio_path='/socket.io', wait_timeout=10)
    try:
        assert client.transport() == 'websocket'
        marker = f'over wss {uuid.uuid4().hex[:8]}'
        client.emit('post_message', ({'source': marker}, token))
        platform.wait_for(
            lambda: any(push['class'] == 'Message'
                        and push['model']['source'] == marker
                        for push in pushed),
            timeout=10, what='the message pushed back over wss')
    finally:
        client.disconnect()
