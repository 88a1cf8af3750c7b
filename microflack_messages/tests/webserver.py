"""Real HTTP servers on 127.0.0.1 for the link preview tests.

``server.routes[path]`` is a function of the request handler that writes
the answer (see :func:`page`, :func:`redirect`, ...); every request is
recorded with its headers in ``server.requests``.
"""
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebServer:
    """``tls=(certfile, keyfile)`` makes it an HTTPS server."""

    def __init__(self, tls=None):
        self.routes = {}
        self.requests = []
        # Slow routes hold their answer until this is set (or 10 s pass).
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.0'

            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path.split('?')[0])
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = 'http'
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket,
                                                    server_side=True)
            self.scheme = 'https'
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={'poll_interval': 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.httpd.server_address[1]

    def url(self, path, host='127.0.0.1'):
        return f'{self.scheme}://{host}:{self.port}{path}'

    def hits(self, path):
        return sum(1 for requested, _ in self.requests
                   if requested.split('?')[0] == path)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _answer(handler, status, body, headers):
    try:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass            # the client stopped reading: what the cap is for


def page(body, content_type='text/html; charset=utf-8', status=200,
         headers=None):
    """A route answering with ``body`` (str or bytes)."""
    data = body.encode() if isinstance(body, str) else body
    all_headers = {'Content-Type': content_type,
                   'Content-Length': str(len(data)), **(headers or {})}
    return lambda handler: _answer(handler, status, data, all_headers)


def html_page(title=None, description=None, body='<p>text</p>'):
    head = ''
    if title is not None:
        head += f'<title>{title}</title>'
    if description is not None:
        head += f'<meta name="description" content="{description}">'
    return page(f'<!doctype html><html><head>{head}</head>'
                f'<body>{body}</body></html>')


def redirect(location, status=302):
    return page('', status=status, headers={'Location': location})


def slow(route, server):
    """``route``, answered only once ``server.release`` is set."""
    def answer(handler):
        server.release.wait(10)
        route(handler)
    return answer


def endless(head, chunk=b' ' * 1024, delay=0.0, limit=64 * 1024 * 1024):
    """An HTML page that starts with ``head`` and then goes on (up to
    ``limit`` bytes, so that a failing test still ends), ``delay`` seconds
    between chunks."""
    stop = threading.Event()

    def answer(handler):
        try:
            handler.send_response(200)
            handler.send_header('Content-Type', 'text/html')
            handler.end_headers()
            handler.wfile.write(head.encode())
            sent = 0
            while sent < limit and not stop.wait(delay):
                handler.wfile.write(chunk)
                handler.wfile.flush()
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    answer.stop = stop
    return answer


def unused_port():
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def self_signed_certificate(directory, names):
    """A certificate (its own CA) for ``names`` (``DNS:x`` or ``IP:x``)
    made with the openssl command; returns (certfile, keyfile)."""
    certfile, keyfile = directory / 'cert.pem', directory / 'key.pem'
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
         '-keyout', str(keyfile), '-out', str(certfile), '-days', '2',
         '-subj', '/CN=MicroFlack test', '-addext',
         'subjectAltName=' + ','.join(names)],
        check=True, capture_output=True)
    return str(certfile), str(keyfile)
