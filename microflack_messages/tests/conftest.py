"""One app and one database for the whole session (the schema comes from
the migrations), emptied before each test, with fakes for etcd and the
pushes, and real HTTP servers on 127.0.0.1 for the links to point at.

TEST_DATABASE_URL picks the database (in-memory SQLite by default).
"""
import ipaddress
import socket

import pytest
import urllib3.util.connection
from webserver import WebServer

from microflack_common.testing import (
    FakeResponse,
    clean_database_app,
    database_app,
    stored_rows,
)
from microflack_messages import tasks
from microflack_messages.app import create_app
from microflack_messages.authors import KNOWN_AUTHORS
from microflack_messages.config import TestConfig
from microflack_messages.models import Message, db

pytest_plugins = ['microflack_common.testing.plugin']


@pytest.fixture(scope='session')
def app():
    for app in database_app(create_app, TestConfig, db):
        yield app
        # Before the database goes: no link is still being fetched.
        tasks.shutdown(app=app)


def every_user_exists(method, url, **kwargs):
    """The users service as the messages service asks it: every user an
    author asks about exists (tests of an unknown one route it)."""
    if method == 'GET' and url.startswith('/api/users/'):
        return FakeResponse(200, {'id': int(url.rsplit('/', 1)[1])})
    return FakeResponse(404, {'error': 'not found'})


@pytest.fixture(autouse=True)
def clean_state(app, network_guard):
    """Empty table, registry and recorded pushes; no task left running
    (waited for before the safety net below and any setting is undone);
    no author known yet, and the users service knows everyone."""
    clean_database_app(app, db)
    app.extensions.pop(KNOWN_AUTHORS, None)
    http = app.extensions['microflack'].http
    http.fallback = every_user_exists
    yield
    assert tasks.wait_for_background(10, app=app), 'a task did not finish'


def _is_ip(host):
    try:
        ipaddress.ip_address(host.split('%')[0])
    except ValueError:
        return False
    return True


@pytest.fixture
def network_guard(monkeypatch):
    """Safety net for every test: no DNS query leaves the machine (IP
    literals and localhost resolve as usual, names put in the returned dict
    resolve to the addresses given, any other name fails), and any
    connection the link fetcher tries to open outside 127.0.0.0/8 and ::1
    fails the test."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = urllib3.util.connection.create_connection
    names = {}
    refused = []

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host in names:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, '',
                     (address, port, 0, 0)) if ':' in address else
                    (socket.AF_INET, socket.SOCK_STREAM, 6, '', (address, port))
                    for address in names[host]]
        if host is None or host == 'localhost' or _is_ip(host):
            return real_getaddrinfo(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f'no DNS in tests: {host}')

    def connect(address, *args, **kwargs):
        if not ipaddress.ip_address(address[0].strip('[]')).is_loopback:
            refused.append(address)
            raise AssertionError(f'a test tried to reach {address}')
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, 'getaddrinfo', getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, 'create_connection', connect)
    yield names
    assert refused == []


@pytest.fixture
def dns(network_guard):
    """``dns[name] = [addresses]``: what a made-up name resolves to."""
    return network_guard


@pytest.fixture
def private_links(settings):
    """The test servers are on 127.0.0.1: let the fetcher reach them."""
    settings(ALLOW_PRIVATE_LINKS=True)


@pytest.fixture
def web():
    server = WebServer()
    yield server
    server.close()


@pytest.fixture
def add_message(app, pusher):
    """Store a message directly (any column may be given); returns its id.
    The insert's push is not kept."""
    def add(source='hi', html=None, user_id=1, **columns):
        with app.app_context():
            message = Message(source=source, html=html or source,
                              user_id=user_id, **columns)
            db.session.add(message)
            db.session.commit()
            message_id = message.id
        pusher.pushes.clear()
        return message_id
    return add


@pytest.fixture
def rows(app):
    """Every stored message as a dict, by id."""
    return lambda: stored_rows(app, db, Message)


@pytest.fixture
def settle(app):
    """Wait until the background tasks are done."""
    def wait(timeout=10):
        assert tasks.wait_for_background(timeout, app=app)
    return wait
