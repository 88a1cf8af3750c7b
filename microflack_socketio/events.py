"""The Socket.IO events of SPEC section 5.

Clients send ``ping_user`` (keep my user online), ``post_message`` and, by
leaving, ``disconnect``; each is relayed with the client's token to the
users or messages API through the load balancer (``platform().http``).
A 401 answers that client alone with ``expired_token``. Bad input never
raises: it is logged and ignored, or answered with ``expired_token`` when
the token is unusable; a relay that gets no answer (service down, timeout)
is logged and the connection goes on.

``updated_model`` pushes need no handler: users and messages publish them
on the Redis channel this server listens on (its message queue), and
Flask-SocketIO broadcasts each to every connected client.

Under gunicorn's eventlet worker the relays do not block other clients:
wsgi.py monkey patches the standard library before anything imports
requests, so requests/urllib3 sockets (and their retry sleeps) yield to the
eventlet hub, and python-socketio runs each event in its own green thread.
"""
import logging
import re
import signal
import time

import requests
from flask import current_app, request, session
from flask_socketio import emit

from microflack_common.service import platform

logger = logging.getLogger(__name__)

EXPIRED_TOKEN = 'expired_token'
USERS_ME = '/api/users/me'
MESSAGES = '/api/messages'
# RFC 6750's bearer token syntax (JWTs fit it): nothing else is put in an
# Authorization header.
TOKEN_PATTERN = re.compile(r'[A-Za-z0-9\-._~+/]+=*')
MAX_TOKEN_LENGTH = 4096
CONNECTIONS = 'socketio_connections'     # key in app.extensions


def register_handlers(socketio):
    socketio.on_event('ping_user', ping_user)
    socketio.on_event('post_message', post_message)
    socketio.on_event('disconnect', on_disconnect)
    socketio.on_error_default(log_unexpected_error)


def usable_token(token):
    return isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_LENGTH \
        and TOKEN_PATTERN.fullmatch(token) is not None


def relay(method, url, token, **kwargs):
    """Send the client's request through the load balancer. Returns the
    response, or None when no answer could be had (logged)."""
    try:
        response = platform().http.request(method, url, token=token,
                                           **kwargs)
    except requests.RequestException as exc:
        logger.warning('%s %s: no answer (%s)', method, url, exc)
        return None
    if response.status_code >= 500:
        logger.warning('%s %s answered %s', method, url,
                       response.status_code)
    elif response.status_code >= 400 and response.status_code != 401:
        logger.info('%s %s answered %s', method, url, response.status_code)
    return response


def expire_token():
    """Tell the client that sent the current event to log out. It is
    connected here, so the event goes straight to it, not via Redis."""
    emit(EXPIRED_TOKEN, ignore_queue=True)


def ping_user(token=None, *_ignored):
    """Mark the token's user online; remember the token for disconnect."""
    if not usable_token(token):
        logger.info('ping_user without a usable token: expired_token sent')
        expire_token()
        return
    response = relay('PUT', USERS_ME, token)
    if response is not None and response.status_code == 401:
        if session.get('token') == token:
            session.pop('token')
        expire_token()
        return
    # Not refused (a relay that got no answer included): disconnect will
    # mark the user offline with it.
    session['token'] = token


def post_message(data=None, token=None, *_ignored):
    """Post a message (``{"source": ...}``) as the token's user."""
    if not usable_token(token):
        logger.info('post_message without a usable token: expired_token '
                    'sent')
        expire_token()
        return
    if not isinstance(data, dict):
        logger.info('post_message ignored: the message must be an object, '
                    'not %s', type(data).__name__)
        return
    response = relay('POST', MESSAGES, token, json=data)
    if response is not None and response.status_code == 401:
        expire_token()


def on_disconnect(reason=None):
    """Mark the user offline, if a ping told us who it is."""
    token = session.get('token')
    if token is None:
        return
    if connections().closing:
        # This instance is stopping: the client reconnects to another one,
        # so its user stays online (or is swept offline if it does not).
        return
    relay('DELETE', USERS_ME, token)


def log_unexpected_error(exc):
    """Last resort: a handler failed in a way not foreseen above. Logged;
    the client stays connected."""
    event = getattr(request, 'event', None) or {}
    logger.error('Socket.IO event %r failed', event.get('message'),
                 exc_info=exc)


def connections():
    return current_app.extensions[CONNECTIONS]


class Connections:
    """This instance's client connections, closed all at once when the
    instance stops."""

    def __init__(self, socketio, close_timeout=2.0):
        self.socketio = socketio
        self.close_timeout = close_timeout
        self.closing = False

    def close_all(self):
        """Close every client's Engine.IO connection. Clients see their
        transport close (not a Socket.IO disconnect, after which they
        would not reconnect by themselves) and reconnect through the load
        balancer, to another instance. Waits at most ``close_timeout``."""
        self.closing = True
        server = self.socketio.server
        sockets = server.eio.sockets
        sids = list(sockets)
        for sid in sids:
            # Each close waits for the client to get its close packet.
            server.start_background_task(server.eio.disconnect, sid)
        deadline = time.monotonic() + self.close_timeout
        while any(sid in sockets for sid in sids) \
                and time.monotonic() < deadline:
            server.sleep(0.05)
        left = sum(sid in sockets for sid in sids)
        logger.info('stopping: closed %d client connection(s)%s',
                    len(sids) - left, f', {left} did not close in time'
                    if left else '')


def close_connections_on_sigterm(app):
    """In a gunicorn worker: on SIGTERM, besides gunicorn's own handling
    (stop accepting, finish requests within the graceful timeout), close
    every client connection so clients move to another instance at once
    instead of being cut off when the worker exits. Returns whether the
    handler was installed (not outside a gunicorn worker)."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        from gunicorn.workers.base import Worker
    except ImportError:
        return False
    if not isinstance(getattr(previous, '__self__', None), Worker):
        return False
    conns = app.extensions[CONNECTIONS]

    def handler(signum, frame):
        previous(signum, frame)
        conns.socketio.start_background_task(conns.close_all)

    signal.signal(signal.SIGTERM, handler)
    # As gunicorn does: a SIGTERM must not interrupt system calls.
    signal.siginterrupt(signal.SIGTERM, False)
    return True
