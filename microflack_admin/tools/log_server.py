"""The consolidated log stream over HTTP (the original's ``:1095/logs``).

    GET /logs[?lines=N][&follow=0]

answers the last N lines (100 by default) of the consolidated log and then,
unless ``follow=0``, every new line as it is written (chunked). Protected
by HTTP Basic credentials from ``LOGS_USER``/``LOGS_PASSWORD``. Standard
library only, so it runs with any Python 3.

A client must send its request within ``--read-timeout`` seconds (and read
what is streamed to it at that pace), and at most ``--max-connections``
are served at once (one thread each): more are answered 503 at once, so
that unfinished requests cannot hold the server's threads.

    python3 log_server.py --bind 127.0.0.1:1095 --log FILE
"""
import argparse
import base64
import binascii
import hmac
import logging
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

POLL_INTERVAL = 0.2
MAX_LINES = 10000
READ_TIMEOUT = 10           # seconds
MAX_CONNECTIONS = 64

logger = logging.getLogger('log_server')


def last_lines(path, count):
    """The last ``count`` lines of a file (bytes), and the offset after."""
    with open(path, 'rb') as file:
        file.seek(0, os.SEEK_END)
        end = file.tell()
        block, data = 65536, b''
        position = end
        while position > 0 and data.count(b'\n') <= count:
            step = min(block, position)
            position -= step
            file.seek(position)
            data = file.read(step) + data
        lines = data.splitlines(keepends=True)[-count:] if count else []
        return b''.join(lines), end


class LogHandler(BaseHTTPRequestHandler):
    server_version = 'MicroFlackLogs'
    protocol_version = 'HTTP/1.1'

    def setup(self):
        # The socket's timeout: a request not sent (or a stream not read)
        # within it ends the connection.
        self.timeout = self.server.read_timeout
        super().setup()

    def log_message(self, fmt, *args):
        logger.info('%s %s', self.address_string(), fmt % args)

    def authorized(self):
        header = self.headers.get('Authorization', '')
        scheme, _, encoded = header.partition(' ')
        if scheme.lower() != 'basic':
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True) \
                .decode('utf-8').partition(':')
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected_user, expected_password = self.server.credentials
        return hmac.compare_digest(user.encode(), expected_user.encode()) \
            & hmac.compare_digest(password.encode(), expected_password.encode())

    def answer(self, status, text, headers=()):
        body = text.encode()
        self.send_response(status)
        self.send_header('Content-Type', 'text/plain; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != '/logs':
            return self.answer(404, 'not found\n')
        if not self.authorized():
            return self.answer(401, 'authentication required\n', [
                ('WWW-Authenticate', 'Basic realm="MicroFlack logs"')])
        query = parse_qs(url.query)
        try:
            lines = int(query.get('lines', ['100'])[0])
            if not 0 <= lines <= MAX_LINES:
                raise ValueError
        except ValueError:
            return self.answer(400, f'lines must be 0 to {MAX_LINES}\n')
        follow = query.get('follow', ['1'])[0] not in ('0', 'false', 'no')
        self.stream(lines, follow)

    def send_chunk(self, data):
        self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
        self.wfile.flush()

    def stream(self, lines, follow):
        path = self.server.log_path
        if not os.path.exists(path):
            open(path, 'ab').close()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain; charset=utf-8')
        self.send_header('Transfer-Encoding', 'chunked')
        self.send_header('Cache-Control', 'no-store')
        self.end_headers()
        try:
            data, offset = last_lines(path, lines)
            if data:
                self.send_chunk(data)
            inode = os.stat(path).st_ino
            while follow and not self.server.stopping:
                time.sleep(POLL_INTERVAL)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                if stat.st_ino != inode or stat.st_size < offset:
                    inode, offset = stat.st_ino, 0     # rotated or truncated
                if stat.st_size > offset:
                    with open(path, 'rb') as file:
                        file.seek(offset)
                        data = file.read(stat.st_size - offset)
                    offset += len(data)
                    self.send_chunk(data)
            self.wfile.write(b'0\r\n\r\n')
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True


BUSY = (b'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n'
        b'Content-Length: 18\r\nConnection: close\r\n\r\ntoo many clients\r\n')


class LogServer(ThreadingHTTPServer):
    daemon_threads = True
    stopping = False
    read_timeout = READ_TIMEOUT
    max_connections = MAX_CONNECTIONS

    def server_activate(self):
        super().server_activate()
        self._connections = 0
        self._lock = threading.Lock()

    def process_request(self, request, client_address):
        with self._lock:
            busy = self._connections >= self.max_connections
            if not busy:
                self._connections += 1
        if busy:
            try:
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections -= 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--bind', required=True, help='host:port')
    parser.add_argument('--log', required=True, help='the consolidated log')
    parser.add_argument('--read-timeout', type=float, default=READ_TIMEOUT,
                        help='seconds a client has to send its request')
    parser.add_argument('--max-connections', type=int,
                        default=MAX_CONNECTIONS,
                        help='connections served at once')
    args = parser.parse_args(argv)
    if args.read_timeout <= 0 or args.max_connections < 1:
        parser.error('--read-timeout and --max-connections must be positive')
    logging.basicConfig(level=logging.INFO,
                        format='%(asctime)s log_server: %(message)s')
    user, password = os.environ.get('LOGS_USER'), \
        os.environ.get('LOGS_PASSWORD')
    if not user or not password:
        parser.error('LOGS_USER and LOGS_PASSWORD must be set')
    host, _, port = args.bind.rpartition(':')
    if not host or not port.isdigit():
        parser.error(f'--bind must be host:port, got {args.bind!r}')
    server = LogServer((host, int(port)), LogHandler)
    server.credentials = (user, password)
    server.log_path = args.log
    server.read_timeout = args.read_timeout
    server.max_connections = args.max_connections

    def stop(signum, frame):
        server.stopping = True
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    logger.info('serving %s on http://%s/logs', args.log, args.bind)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == '__main__':
    sys.exit(main())
