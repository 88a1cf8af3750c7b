"""The service's one use of python-engineio's internals: dropping every
client's connection when the instance stops.

python-engineio's public ``Server.disconnect()`` sends each client an
Engine.IO close packet, which python-socketio clients take as final: they
do not reconnect. Dropped without it, a connection looks like an instance
that died, and every client reconnects through the load balancer to
another instance. That needs the server's table of sessions
(``Server.sockets``) and ``Socket.close(abort=True)``.

:func:`check` says at start, once, whether the running python-engineio has
them (``applied ... to python-engineio <version>`` or ``not applied:
<why>``); :func:`drop_all` falls back to the public ``disconnect()``
where it does not. tests/test_engineio_internals.py fails when the pinned
version no longer has them.
"""
import inspect
import logging
from importlib.metadata import PackageNotFoundError, version

logger = logging.getLogger(__name__)

WHAT = 'dropping connections without a close packet'


def engineio_version():
    try:
        return version('python-engineio')
    except PackageNotFoundError:
        return None


def missing(eio):
    """Why ``eio`` (an engineio.Server) cannot have its connections dropped
    without a close packet, or None when it can."""
    if not isinstance(getattr(eio, 'sockets', None), dict):
        return 'the server keeps no sockets table'
    from engineio.socket import Socket
    try:
        parameters = inspect.signature(Socket.close).parameters
    except (TypeError, ValueError):
        parameters = {}
    if not {'wait', 'abort'} <= set(parameters):
        return 'Socket.close() takes no wait and abort'
    return None


def check(eio):
    """Log whether :func:`drop_all` can work as intended here; returns
    whether it can."""
    why = missing(eio)
    if why is None:
        logger.info('applied %s to python-engineio %s', WHAT,
                    engineio_version())
    else:
        logger.warning('%s not applied to python-engineio %s: %s; clients '
                       'get a close packet at stop and may not reconnect',
                       WHAT, engineio_version(), why)
    return why is None


def drop_all(eio):
    """Close every client's connection at once, without telling the client;
    returns how many there were. Where that cannot be done, the public
    disconnect() (None: not counted)."""
    if missing(eio) is not None:
        eio.disconnect()
        return None
    closed = 0
    for sid, sock in list(eio.sockets.items()):
        sock.close(wait=False, abort=True)
        eio.sockets.pop(sid, None)
        closed += 1
    return closed
