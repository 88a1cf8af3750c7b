"""The log stream's server (tools/log_server.py) against clients that do
not finish their requests (issue 19, finding 7: 200 unfinished requests
were all still held after 45 s, a thread each): a request must arrive
within the read timeout, and beyond the connection cap a client is
answered 503 at once."""
import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from microflack_common.testing import free_port, wait_for_port

TOOLS = Path(__file__).resolve().parent.parent / 'tools'
READ_TIMEOUT = 1.0
MAX_CONNECTIONS = 5


@pytest.fixture
def log_server(tmp_path):
    log = tmp_path / 'microflack.log'
    log.write_text('users_v1_h_1 | hello\n')
    port = free_port()
    env = {**os.environ, 'LOGS_USER': 'admin', 'LOGS_PASSWORD': 'secret'}
    server = subprocess.Popen(
        [sys.executable, str(TOOLS / 'log_server.py'), '--bind',
         f'127.0.0.1:{port}', '--log', str(log), '--read-timeout',
         str(READ_TIMEOUT), '--max-connections', str(MAX_CONNECTIONS)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def connect(port):
    return socket.create_connection(('127.0.0.1', port), timeout=10)


def closed_within(sock, seconds):
    """Whether the server ends the connection within ``seconds`` (what it
    sent before, if anything, is read and dropped)."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sock.recv(4096) == b'':
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
    return False


def get_logs(port):
    credentials = base64.b64encode(b'admin:secret').decode()
    with connect(port) as sock:
        sock.sendall(b'GET /logs?follow=0&lines=5 HTTP/1.1\r\nHost: x\r\n'
                     b'Authorization: Basic ' + credentials.encode() +
                     b'\r\nConnection: close\r\n\r\n')
        data = b''
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_an_unfinished_request_is_dropped_after_the_read_timeout(log_server):
    started = time.monotonic()
    sockets = [connect(log_server) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in sockets:
            sock.sendall(b'GET /logs HTTP/1.1\r\nHost: x\r\n')   # no end
        for sock in sockets:
            assert closed_within(sock, READ_TIMEOUT + 3)
        assert time.monotonic() - started < READ_TIMEOUT + 3
    finally:
        for sock in sockets:
            sock.close()
    # Their threads are free again: the stream is served.
    assert b'hello' in get_logs(log_server)


def test_connections_beyond_the_cap_are_answered_503_at_once(log_server):
    held = [connect(log_server) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(b'GET /logs HTTP/1.1\r\n')
        time.sleep(0.2)
        with connect(log_server) as extra:
            extra.settimeout(2)
            answer = extra.recv(4096)
        assert answer.startswith(b'HTTP/1.1 503 '), answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert b'hello' in get_logs(log_server)


def test_the_stream_still_needs_the_credentials(log_server):
    with connect(log_server) as sock:
        sock.sendall(b'GET /logs HTTP/1.1\r\nHost: x\r\nConnection: close'
                     b'\r\n\r\n')
        assert sock.recv(4096).startswith(b'HTTP/1.1 401 ')
    assert get_logs(log_server).startswith(b'HTTP/1.1 200 ')
