"""engineio_internals against the pinned python-engineio: it can drop
every connection without a close packet, and says so at start; a server
without what it relies on gets the public disconnect() instead."""
import logging
from importlib.metadata import version

import engineio
import pytest

from microflack_socketio import engineio_internals


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.INFO, logger=engineio_internals.__name__)
    return caplog


def test_the_pinned_engineio_has_what_it_needs(log):
    assert engineio_internals.missing(engineio.Server(async_mode='threading')) is None
    assert engineio_internals.check(engineio.Server(async_mode='threading'))
    assert log.messages == [
        'applied dropping connections without a close packet to '
        f'python-engineio {version("python-engineio")}']


def test_connections_are_dropped_without_a_close_packet():
    closed = []

    class Socket:
        def close(self, wait=True, abort=False, reason=None):
            closed.append((wait, abort))
    eio = engineio.Server(async_mode='threading')
    eio.sockets = {'a': Socket(), 'b': Socket()}
    assert engineio_internals.drop_all(eio) == 2
    assert closed == [(False, True)] * 2
    assert eio.sockets == {}


class Other:
    """A server without the sockets table."""

    def __init__(self):
        self.disconnected = 0

    def disconnect(self, sid=None):
        self.disconnected += 1


def test_a_server_without_them_is_said_so(log):
    assert not engineio_internals.check(Other())
    [record] = log.records
    assert record.levelname == 'WARNING'
    assert 'not applied to python-engineio' in record.getMessage()


def test_a_server_without_them_gets_the_public_disconnect():
    other = Other()
    assert engineio_internals.drop_all(other) is None
    assert other.disconnected == 1
