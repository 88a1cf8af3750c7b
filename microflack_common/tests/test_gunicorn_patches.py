"""The patches of gunicorn_patches against the gunicorn the services pin
(the socketio suite checks them against its own pin): each applies, says
so once, and is left out, saying why, where it does not fit."""
import logging
import queue
import signal
import time

import gunicorn
import pytest

from microflack_common import gunicorn_patches
from microflack_common.gunicorn_patches import (
    YieldingSignalQueue,
    shorten_graceful_timeout,
    yield_signal_queue,
)
from microflack_common.testing import gunicorn_arbiter, gunicorn_worker


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.INFO, logger=gunicorn_patches.__name__)
    return caplog


def test_the_signal_queue_is_swapped_in_a_green_master(log):
    arbiter = gunicorn_arbiter()
    native = arbiter.SIG_QUEUE
    assert yield_signal_queue(arbiter, green=True)
    assert isinstance(arbiter.SIG_QUEUE, YieldingSignalQueue)
    assert arbiter.SIG_QUEUE.native is native
    assert log.messages == ['applied the yielding signal queue to gunicorn '
                            f'{gunicorn.__version__}']
    # Once only.
    assert yield_signal_queue(arbiter, green=True)
    assert arbiter.SIG_QUEUE.native is native


def test_the_master_still_gets_its_signals_through_it():
    arbiter = gunicorn_arbiter()
    yield_signal_queue(arbiter, green=True)
    arbiter.signal(signal.SIGHUP, None)     # what gunicorn's handler does
    arbiter.signal(signal.SIGTTIN, None)
    assert arbiter.wait_for_signals(timeout=1) == [signal.SIGHUP,
                                                   signal.SIGTTIN]
    started = time.monotonic()
    assert arbiter.wait_for_signals(timeout=0.2) == []
    assert 0.15 <= time.monotonic() - started < 1


def test_not_needed_in_a_master_of_native_threads(log):
    arbiter = gunicorn_arbiter()
    native = arbiter.SIG_QUEUE
    assert not yield_signal_queue(arbiter, green=False)
    assert arbiter.SIG_QUEUE is native
    assert log.messages == [f'the yielding signal queue not applied to '
                            f'gunicorn {gunicorn.__version__}: not needed, '
                            'the master runs native threads']


def test_an_arbiter_without_the_queue_is_left_alone(log):
    class Arbiter:
        pass
    arbiter = Arbiter()
    assert not yield_signal_queue(arbiter, green=True)
    assert not hasattr(arbiter, 'SIG_QUEUE')
    [record] = log.records
    assert record.levelname == 'WARNING'
    assert 'not applied' in record.getMessage()


def test_the_yielding_queue_waits_as_a_queue_does():
    native = queue.SimpleQueue()
    yielding = YieldingSignalQueue(native)
    yielding.put_nowait(1)
    assert yielding.get(timeout=1) == 1
    with pytest.raises(queue.Empty):
        yielding.get(block=False)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        yielding.get(timeout=0.2)
    assert time.monotonic() - started >= 0.2


def test_a_worker_graceful_timeout_is_shortened(log):
    arbiter = gunicorn_arbiter(graceful_timeout=30)
    worker = gunicorn_worker(arbiter)
    assert shorten_graceful_timeout(worker, 2)
    assert worker.cfg.graceful_timeout == 2
    assert log.messages == ["applied a worker's graceful timeout of 2 s to "
                            f'gunicorn {gunicorn.__version__}']


def test_a_shorter_graceful_timeout_is_kept():
    worker = gunicorn_worker(gunicorn_arbiter(graceful_timeout=1))
    assert shorten_graceful_timeout(worker, 2)
    assert worker.cfg.graceful_timeout == 1


def test_a_worker_without_the_setting_is_left_alone(log):
    class Worker:
        cfg = None
    assert not shorten_graceful_timeout(Worker(), 2)
    [record] = log.records
    assert record.levelname == 'WARNING'
    assert 'not applied' in record.getMessage()


def json_error_written(monkeypatch):
    """Apply json_error_answers (undone after the test) and have gunicorn
    write a 431 through a socket pair: the bytes the client gets."""
    import socket

    from gunicorn import util
    from gunicorn.http import wsgi

    from microflack_common.gunicorn_patches import json_error_answers
    monkeypatch.setattr(util, 'write_error', util.write_error)
    monkeypatch.setattr(wsgi, 'SERVER', wsgi.SERVER)
    assert json_error_answers()
    assert wsgi.SERVER == 'microflack'
    server, client = socket.socketpair()
    with server, client:
        util.write_error(server, 431, 'Request Header Fields Too Large',
                         "Error parsing headers: 'x\u00e9'")
        server.shutdown(socket.SHUT_WR)
        return client.makefile('rb').read()


def test_gunicorns_own_errors_are_json(monkeypatch):
    """Issue 19, finding 8: they were HTML pages."""
    import json
    answer = json_error_written(monkeypatch)
    head, _, body = answer.partition(b'\r\n\r\n')
    assert head.split(b'\r\n')[0] == \
        b'HTTP/1.1 431 Request Header Fields Too Large'
    assert b'Content-Type: application/json' in head
    assert f'Content-Length: {len(body)}'.encode() in head
    assert json.loads(body) == {'error': "request header fields too large: "
                                         "Error parsing headers: 'x\u00e9'"}
