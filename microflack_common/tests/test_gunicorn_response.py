"""gunicorn, with the shared settings, sends a response's headers together
with its first body bytes (gunicorn_config.send_headers_with_the_body),
and the bytes on the wire stay what gunicorn alone sends."""
import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from microflack_common import gunicorn_config

CLIENT, SERVER = ('127.0.0.1', 40000), ('127.0.0.1', 5000)


class Socket:
    """What gunicorn sends, one item per ``sendall``."""

    def __init__(self):
        self.sent = []

    def sendall(self, data):
        self.sent.append(bytes(data))


def response(method='GET', version='1.1'):
    cfg = Config()
    request = f'{method} /api/x HTTP/{version}\r\nHost: t\r\n\r\n'.encode()
    parsed = next(RequestParser(cfg, [request], CLIENT))
    sock = Socket()
    resp, _ = wsgi.create(parsed, sock, CLIENT, SERVER, cfg)
    return resp, sock


def split(data):
    head, _, body = data.partition(b'\r\n\r\n')
    return head.decode('latin-1').split('\r\n'), body


def test_applied_to_gunicorn_once():
    assert wsgi.Response._joins_headers_and_body is True
    assert gunicorn_config.send_headers_with_the_body(wsgi.Response) is False


def test_a_class_without_the_methods_is_left_alone():
    class Other:
        def write(self, data):
            pass
    assert gunicorn_config.send_headers_with_the_body(Other) is False
    assert not hasattr(Other, '_joins_headers_and_body')


def test_headers_and_body_in_one_send():
    resp, sock = response()
    resp.start_response('200 OK', [('Content-Type', 'application/json'),
                                   ('Content-Length', '11')])
    resp.write(b'{"a": true}')
    resp.close()
    [sent] = sock.sent
    head, body = split(sent)
    assert head[0] == 'HTTP/1.1 200 OK'
    assert {'Connection: keep-alive', 'Content-Type: application/json',
            'Content-Length: 11'} <= set(head)
    assert body == b'{"a": true}'


def test_later_chunks_follow_alone():
    resp, sock = response()
    resp.start_response('200 OK', [('Content-Length', '10')])
    for chunk in (b'hello', b'world'):
        resp.write(chunk)
    resp.close()
    assert len(sock.sent) == 2
    assert split(sock.sent[0])[1] == b'hello'
    assert sock.sent[1] == b'world'


def test_no_more_than_the_content_length():
    resp, sock = response()
    resp.start_response('200 OK', [('Content-Length', '3')])
    resp.write(b'abcdef')
    resp.write(b'more')
    resp.close()
    assert split(b''.join(sock.sent))[1] == b'abc'


def test_head_sends_the_headers_only():
    resp, sock = response('HEAD')
    resp.start_response('200 OK', [('Content-Length', '5')])
    resp.write(b'hello')
    resp.close()
    [sent] = sock.sent
    assert sent.endswith(b'\r\n\r\n')
    assert 'Content-Length: 5' in split(sent)[0]


def test_a_response_without_body():
    resp, sock = response()
    resp.start_response('204 NO CONTENT', [('X-Request-Id', '7')])
    resp.close()
    [sent] = sock.sent
    head, body = split(sent)
    assert sent.endswith(b'\r\n\r\n') and body == b''
    # gunicorn's own headers (Date varies), then the application's; no
    # framing header, which a 204 must not carry.
    assert head[0] == 'HTTP/1.1 204 NO CONTENT'
    assert [line for line in head[1:] if not line.startswith('Date: ')] == [
        'Server: gunicorn', 'Connection: keep-alive', 'X-Request-Id: 7']
    assert sum(line.startswith('Date: ') for line in head) == 1


def test_chunked_responses_keep_their_framing():
    resp, sock = response()
    resp.start_response('200 OK', [('Content-Type', 'text/plain')])
    assert resp.chunked
    resp.write(b'hello')
    resp.close()
    head, body = split(b''.join(sock.sent))
    assert 'Transfer-Encoding: chunked' in head
    assert body == b'5\r\nhello\r\n0\r\n\r\n'
    # As gunicorn does: the headers alone first.
    assert sock.sent[0].endswith(b'\r\n\r\n')


def test_bad_body_still_sends_the_headers_first():
    resp, sock = response()
    resp.start_response('200 OK', [('Content-Length', '5')])
    with pytest.raises(TypeError):
        resp.write('text, not bytes')
    [sent] = sock.sent
    assert sent.endswith(b'\r\n\r\n')
    assert resp.headers_sent


@pytest.mark.parametrize('version', ['1.0', '1.1'])
def test_http_versions(version):
    resp, sock = response(version=version)
    resp.start_response('200 OK', [('Content-Length', '2')])
    resp.write(b'ok')
    resp.close()
    [sent] = sock.sent
    head, body = split(sent)
    assert head[0] == f'HTTP/{version} 200 OK' and body == b'ok'
