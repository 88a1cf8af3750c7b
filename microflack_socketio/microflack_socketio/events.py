"""The Socket.IO events of SPEC section 5.

Clients send ``ping_user`` (keep my user online), ``post_message`` and, by
leaving, ``disconnect``; each is relayed with the client's token to the
users or messages API through the load balancer (``shared_parts().http``).
A 401 answers that client alone with ``expired_token``. Bad input never
raises: it is logged and ignored, or answered with ``expired_token`` when
the token is unusable; a relay that gets no answer (service down, timeout)
is logged and the connection goes on.

``updated_model`` pushes need no handler: users and messages publish them
on the Redis channel this server listens on (its message queue), and
Flask-SocketIO broadcasts each to every connected client.

A revocation of every token of a user (a password change, log out
everywhere) reaches this process through its revocation mirror: each of
its connections signed in as that user with an older token gets
``expired_token`` at once (:class:`SignedIn`), not at its next ping.

Under gunicorn's eventlet worker the relays do not block other clients:
wsgi.py monkey patches the standard library before anything imports
requests, so requests/urllib3 sockets (and their retry sleeps) yield to the
eventlet hub, and python-socketio runs each event in its own green thread.
"""
import functools
import logging
import math
import re
import signal
import threading
import time
from contextlib import contextmanager

import requests
from flask import current_app, request, session
from flask_socketio import emit

from microflack_common.gunicorn_patches import shorten_graceful_timeout
from microflack_common.revocation import (
    REVOKED_USERS_PREFIX,
    issued_at,
    revoked_since,
)
from microflack_common.service import shared_parts
from microflack_common.tokens import InvalidToken, decode_token

from . import engineio_internals

logger = logging.getLogger(__name__)

EXPIRED_TOKEN = 'expired_token'
USERS_ME = '/api/users/me'
MESSAGES = '/api/messages'
# RFC 6750's bearer token syntax (JWTs fit it): nothing else is put in an
# Authorization header.
TOKEN_PATTERN = re.compile(r'[A-Za-z0-9\-._~+/]+=*')
MAX_TOKEN_LENGTH = 4096
CONNECTIONS = 'microflack_connections'   # key in app.extensions
SIGNED_IN = 'microflack_signed_in'       # key in app.extensions


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
        with connections().relaying():
            response = shared_parts().http.request(method, url, token=token,
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
            current_app.extensions[SIGNED_IN].remove(request.sid)
        expire_token()
        return
    # Not refused (a relay that got no answer included): disconnect will
    # mark the user offline with it.
    session['token'] = token
    remember_signed_in(token)
    # A client that left while the PUT was on its way was handled by
    # on_disconnect before the token was known: mark it offline now.
    if not still_connected():
        relay('DELETE', USERS_ME, token)


def still_connected():
    server = current_app.extensions['socketio'].server
    return server.manager.is_connected(request.sid, request.namespace or '/')


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


def remember_signed_in(token):
    """This connection is signed in with ``token``'s user."""
    try:
        claims = decode_token(token, current_app.config['JWT_SECRET_KEY'])
    except InvalidToken:
        return      # the users service accepted it: it expired meanwhile
    current_app.extensions[SIGNED_IN].add(claims['user_id'], request.sid,
                                          issued_at(claims))


def on_disconnect(reason=None):
    """Mark the user offline, if a ping told us who it is."""
    current_app.extensions[SIGNED_IN].remove(request.sid)
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


class SignedIn:
    """Which connections of this process are signed in as which user, and
    when their token was issued (from their last accepted ping)."""

    def __init__(self):
        self._users = {}        # user id -> {sid: issued at}
        self._user_of = {}      # sid -> user id
        self._lock = threading.Lock()

    def add(self, user_id, sid, issued):
        with self._lock:
            self._forget(sid)
            self._users.setdefault(user_id, {})[sid] = issued
            self._user_of[sid] = user_id

    def remove(self, sid):
        with self._lock:
            self._forget(sid)

    def _forget(self, sid):
        user_id = self._user_of.pop(sid, None)
        if user_id is not None:
            sids = self._users.get(user_id, {})
            sids.pop(sid, None)
            if not sids:
                self._users.pop(user_id, None)

    def revoke(self, user_id, since):
        """The connections of ``user_id`` whose token was issued before
        ``since``, forgotten."""
        with self._lock:
            ended = [sid for sid, issued in self._users.get(user_id, {}).items()
                     if issued < since]
            for sid in ended:
                self._forget(sid)
        return ended


def follow_user_revocations(app, socketio):
    """Log out at once the pages of a user whose tokens were all revoked
    (the mirror's thread calls this for every revocation it sees)."""
    signed_in = app.extensions[SIGNED_IN] = SignedIn()
    revocations = app.extensions['microflack'].revocations
    if revocations is None or revocations.mirror is None:
        return      # no registry to follow (unit tests): pings find out

    revocations.mirror.add_listener(
        functools.partial(log_out_pages, socketio, signed_in))


def log_out_pages(socketio, signed_in, key, value):
    """For a revocation (``key``, ``value``) of every token of a user:
    ``expired_token`` to each connection here signed in as that user with
    an older token."""
    user = key[len(REVOKED_USERS_PREFIX):]
    if not key.startswith(REVOKED_USERS_PREFIX) or not user.isdigit():
        return
    ended = signed_in.revoke(int(user), revoked_since(value))
    for sid in ended:
        socketio.emit(EXPIRED_TOKEN, to=sid, ignore_queue=True)
    if ended:
        logger.info('the tokens of user %s were revoked: %d page(s) here '
                    'logged out', user, len(ended))


class Connections:
    """This instance's client connections and the relays in flight for
    them, for a clean stop."""

    def __init__(self, socketio, stop_timeout=2.0):
        self.socketio = socketio
        self.stop_timeout = stop_timeout
        self.closing = False
        self._relays = 0
        self._lock = threading.Lock()

    @contextmanager
    def relaying(self):
        with self._lock:
            self._relays += 1
        try:
            yield
        finally:
            with self._lock:
                self._relays -= 1

    @property
    def relays_in_flight(self):
        return self._relays

    def close_all(self):
        """Drop every client's connection. The clients see their transport
        close, as when an instance dies, and reconnect through the load
        balancer to another instance. (An Engine.IO close packet would be
        final to python-socketio clients, which then do not reconnect;
        a Socket.IO disconnect would be final to browsers too.)"""
        self.closing = True
        closed = engineio_internals.drop_all(self.socketio.server.eio)
        if closed is None:
            logger.info('stopping: disconnected every client')
        else:
            logger.info('stopping: closed %d client connection(s)', closed)
        return closed

    def wait_for_relays(self, timeout):
        """Give the relays in flight (a message being posted...) up to
        ``timeout`` seconds to finish; True if none is left."""
        deadline = time.monotonic() + timeout
        while self._relays and time.monotonic() < deadline:
            self.socketio.sleep(0.05)
        if self._relays:
            logger.warning('stopping with %d relay(s) still in flight',
                           self._relays)
        return not self._relays


def stop_cleanly_under_gunicorn(app):
    """In a gunicorn worker, on SIGTERM, besides gunicorn's own handling
    (stop accepting, finish the requests in flight): drop every client
    connection at once so clients move to another instance, then give the
    relays in flight up to SOCKETIO_STOP_TIMEOUT seconds before the worker
    exits. The worker's graceful timeout is cut to that too: eventlet
    cannot wake the WebSocket request of a dropped connection (another
    green thread closed its socket), which would otherwise hold the worker
    until the master kills it. Set up when the worker has loaded the app
    (gunicorn_config's post_worker_init hook); outside gunicorn nothing
    happens."""
    app.extensions['microflack'].on_worker_start(
        lambda worker: _stop_cleanly(app, worker))


def _stop_cleanly(app, worker):
    conns = app.extensions[CONNECTIONS]
    engineio_internals.check(conns.socketio.server.eio)
    stop_timeout = max(1, math.ceil(conns.stop_timeout))
    shorten_graceful_timeout(worker, stop_timeout)
    previous = signal.getsignal(signal.SIGTERM)    # the worker's own
    deadline = []

    def handler(signum, frame):
        # Before gunicorn's own handling, which may already end some
        # connections: from now on a disconnect is this instance stopping.
        conns.closing = True
        previous(signum, frame)
        if not deadline:
            deadline.append(time.monotonic() + stop_timeout)
            conns.socketio.start_background_task(conns.close_all)

    def finish_relays():
        if deadline:
            conns.wait_for_relays(max(0.0, deadline[0] - time.monotonic()))

    signal.signal(signal.SIGTERM, handler)
    # As gunicorn has it: a SIGTERM does not interrupt system calls.
    signal.siginterrupt(signal.SIGTERM, False)
    app.extensions['microflack'].on_shutdown(finish_relays)
