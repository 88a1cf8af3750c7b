"""The platform's changes to gunicorn's internals, all of them.

Each is a function that a hook of :mod:`.gunicorn_config` (or a service)
calls explicitly. It checks that the running gunicorn has what it relies
on and logs one line saying whether it applied, and to which gunicorn
version: ``applied <patch> to gunicorn <version>``, or ``not applied:
<why>``. ``tests/test_gunicorn_patches.py`` of the common suite and of the
socketio suite (each on its own gunicorn pin) fail when a pinned version
no longer takes one.
"""
import json
import logging
import queue
import time

logger = logging.getLogger(__name__)


def gunicorn_version():
    try:
        import gunicorn
    except ImportError:
        return None
    return gunicorn.__version__


def _report(patch, applied, why=None, level=logging.WARNING):
    if applied:
        logger.info('applied %s to gunicorn %s', patch, gunicorn_version())
    else:
        logger.log(level, '%s not applied to gunicorn %s: %s', patch,
                   gunicorn_version(), why)
    return applied


class YieldingSignalQueue:
    """Stands in for the arbiter's signal queue: polls the real one with
    sleeps that, eventlet's, let the master's green threads run."""

    def __init__(self, native):
        self.native = native

    def put_nowait(self, item):
        self.native.put_nowait(item)

    def get_nowait(self):
        return self.native.get_nowait()

    def get(self, block=True, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.native.get_nowait()
            except queue.Empty:
                if not block or (deadline is not None
                                 and time.monotonic() >= deadline):
                    raise
                time.sleep(0.05)


def yield_signal_queue(arbiter, green):
    """Under eventlet (socketio's worker class monkey patches the master
    when gunicorn imports it), gunicorn's master waits for signals on
    ``Arbiter.SIG_QUEUE``, a queue made before the patching: its blocking
    ``get()`` holds the whole process, so no green thread of the master
    would run (the registration refresh, the drain on SIGTERM). This
    swaps it for a :class:`YieldingSignalQueue`. ``green``: whether the
    master's threads are eventlet's; without them nothing is needed.
    Returns whether it applied."""
    patch = 'the yielding signal queue'
    if not green:
        return _report(patch, False, 'not needed, the master runs native '
                       'threads', level=logging.INFO)
    native = getattr(arbiter, 'SIG_QUEUE', None)
    if isinstance(native, YieldingSignalQueue):
        return True
    if not all(callable(getattr(native, name, None))
               for name in ('get', 'get_nowait', 'put_nowait')):
        return _report(patch, False, 'the arbiter has no SIG_QUEUE queue; '
                       "the master's green threads may stall")
    arbiter.SIG_QUEUE = YieldingSignalQueue(native)
    return _report(patch, True)


def shorten_graceful_timeout(worker, seconds):
    """Cut one worker's graceful timeout (the time it gives its open
    connections after a SIGTERM) to ``seconds``, leaving the master's: an
    eventlet worker cannot wake the WebSocket request of a connection the
    app dropped, which would otherwise hold it until the master kills it.
    The master keeps the longer timeout so that the worker ends by itself
    first. Returns whether it applied."""
    patch = f"a worker's graceful timeout of {seconds} s"
    cfg = getattr(worker, 'cfg', None)
    current = getattr(cfg, 'graceful_timeout', None)
    if not isinstance(current, (int, float)) \
            or 'graceful_timeout' not in getattr(cfg, 'settings', {}):
        return _report(patch, False, 'the worker has no graceful_timeout '
                       'setting')
    if current > seconds:
        cfg.set('graceful_timeout', seconds)
        if cfg.graceful_timeout != seconds:
            return _report(patch, False, 'the setting did not change')
    return _report(patch, True)


def json_error_answers():
    """gunicorn answers the requests it cannot parse (400, 414 request line
    too long, 431 headers too large, ...) itself, with an HTML page and
    ``Server: gunicorn``: make them the API's JSON ``{"error": ...}``, and
    name no server software in any answer. Returns whether it applied."""
    patch = 'JSON error answers'
    try:
        from gunicorn import util
        from gunicorn.http import wsgi
    except ImportError:
        return _report(patch, False, 'gunicorn is not installed',
                       logging.INFO)
    if not callable(getattr(util, 'write_error', None)) \
            or not callable(getattr(util, 'write_nonblock', None)) \
            or not isinstance(getattr(wsgi, 'SERVER', None), str):
        return _report(patch, False, 'gunicorn has no util.write_error, '
                       'util.write_nonblock or http.wsgi.SERVER')
    util.write_error = write_json_error
    wsgi.SERVER = 'microflack'
    return _report(patch, True)


def write_json_error(sock, status_int, reason, mesg):
    """What gunicorn's ``util.write_error`` writes, as JSON."""
    from gunicorn import util
    reason = str(reason).encode('latin-1', 'replace').decode('latin-1')
    body = json.dumps({'error': f'{reason.lower()}: {mesg}' if mesg
                       else reason.lower()}).encode()
    head = (f'HTTP/1.1 {int(status_int)} {reason}\r\n'
            'Connection: close\r\n'
            'Content-Type: application/json\r\n'
            f'Content-Length: {len(body)}\r\n\r\n').encode('latin-1')
    util.write_nonblock(sock, head + body)
