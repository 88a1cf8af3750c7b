"""microflack_common.gunicorn_patches against socketio's own gunicorn pin
(the common suite checks the other services' pin): the two patches this
service needs still fit it."""
import importlib.util
import signal
import time
from pathlib import Path

from microflack_common.gunicorn_patches import (
    YieldingSignalQueue,
    shorten_graceful_timeout,
    yield_signal_queue,
)
from microflack_common.testing import gunicorn_arbiter, gunicorn_worker


def test_the_master_takes_the_yielding_signal_queue():
    arbiter = gunicorn_arbiter()
    assert yield_signal_queue(arbiter, green=True)
    assert isinstance(arbiter.SIG_QUEUE, YieldingSignalQueue)
    arbiter.signal(signal.SIGTERM, None)
    assert arbiter.wait_for_signals(timeout=1) == [signal.SIGTERM]
    started = time.monotonic()
    assert arbiter.wait_for_signals(timeout=0.2) == []
    assert 0.15 <= time.monotonic() - started < 1


def eventlet_worker_source():
    # Read, not imported: importing it monkey patches this process.
    spec = importlib.util.find_spec('gunicorn.workers.geventlet')
    return Path(spec.origin).read_text()


def test_the_eventlet_worker_takes_a_shorter_graceful_timeout():
    worker = gunicorn_worker(gunicorn_arbiter(graceful_timeout=4))
    assert shorten_graceful_timeout(worker, 2)
    assert worker.cfg.graceful_timeout == 2
    # What the eventlet worker waits for its connections after a SIGTERM.
    assert 'eventlet.Timeout(self.cfg.graceful_timeout)' in \
        eventlet_worker_source()


def test_its_errors_are_json_too(monkeypatch):
    import json

    from gunicorn import util
    from gunicorn.http import wsgi

    from microflack_common.gunicorn_patches import json_error_answers
    monkeypatch.setattr(util, 'write_error', util.write_error)
    monkeypatch.setattr(wsgi, 'SERVER', wsgi.SERVER)
    assert json_error_answers()
    sent = []
    monkeypatch.setattr(util, 'write_nonblock',
                        lambda sock, data: sent.append(data))
    util.write_error(None, 400, 'Bad Request', 'Invalid request line')
    head, _, body = sent[0].partition(b'\r\n\r\n')
    assert b'Content-Type: application/json' in head
    assert json.loads(body) == {'error': 'bad request: Invalid request line'}
