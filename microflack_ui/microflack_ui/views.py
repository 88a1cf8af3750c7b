"""GET /: the chat page, and the caching rules of its static files."""
import hashlib
import os
from stat import S_ISREG

from flask import (
    Blueprint,
    current_app,
    make_response,
    render_template,
    request,
    url_for,
)
from werkzeug.security import safe_join

ui = Blueprint('ui', __name__)

# A static URL carries its file's content hash (?v=<hash>), so the bytes
# behind such a URL never change: browsers may keep them for a year.
HASH_LENGTH = 16
IMMUTABLE_MAX_AGE = 365 * 24 * 3600

# Everything the page loads comes from this origin (the load balancer); the
# client configuration is a JSON data block, so no inline script is needed
# and none would run, even if a message's HTML smuggled one in. (eval is
# refused too: browser tests using Playwright's wait_for_function need a
# context made with bypass_csp=True.)
CONTENT_SECURITY_POLICY = '; '.join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",      # Bootstrap draws some icons as data: SVGs
    # REST API and Socket.IO: CSP 3 browsers (Chromium, Firefox, Safari
    # 15.4+) let 'self' cover WebSockets to the page's own host and port
    # (ws: for an http: page, wss: for https:).
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def client_config():
    """What app.js needs to know, rendered into the page as JSON."""
    config = current_app.config
    return {'socketio': bool(config['UI_SOCKETIO']),
            'version': config['VERSION'],
            'ping_interval': config['UI_PING_INTERVAL']}


class ContentHashes:
    """The content hash of each static file, computed once per file and
    process, and again when its modification time or size changes (a file
    rebuilt under ``flask run``)."""

    def __init__(self):
        self._known = {}  # path -> ((mtime_ns, size), hash)

    def of(self, path):
        """The hash of the file at ``path``, or None if there is none."""
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not S_ISREG(info.st_mode):
            return None
        stamp = (info.st_mtime_ns, info.st_size)
        known = self._known.get(path)
        if known is None or known[0] != stamp:
            # Stamped before reading: a file changing meanwhile gets a new
            # stamp, so it is hashed again on the next call.
            known = (stamp, file_hash(path))
            self._known[path] = known
        return known[1]


def file_hash(path):
    with open(path, 'rb') as file:
        return hashlib.file_digest(file, 'sha256').hexdigest()[:HASH_LENGTH]


@ui.record_once
def _add_content_hashes(state):
    state.app.extensions['ui_content_hashes'] = ContentHashes()


def content_hash(filename):
    """The current content hash of a static file (None: no such file)."""
    path = safe_join(current_app.static_folder, filename)
    if path is None:
        return None
    return current_app.extensions['ui_content_hashes'].of(path)


@ui.app_template_global()
def static_url(filename):
    """URL of a static file, carrying its content hash: a changed file gets
    a new URL, which browsers fetch anew."""
    return url_for('static', filename=filename, v=content_hash(filename))


@ui.route('/')
def index():
    response = make_response(render_template(
        'index.html', client_config=client_config()))
    response.headers['Content-Security-Policy'] = CONTENT_SECURITY_POLICY
    response.cache_control.no_cache = True
    return response


@ui.after_app_request
def cache_headers(response):
    """A static file asked for under its current content hash may be kept
    by browsers for a year without asking again: that URL names those
    bytes. Under any other URL (another hash, none) it is revalidated on
    every use (ETag/Last-Modified), so a stale or hand-written URL never
    pins an old file, e.g. a new page's URL answered by an old instance
    during a roll. The page is no-cache, so it names a changed file at
    once."""
    response.headers.setdefault('X-Content-Type-Options', 'nosniff')
    if request.endpoint == 'static' and response.status_code in (200, 304):
        version = request.args.get('v')
        filename = (request.view_args or {}).get('filename', '')
        if version is not None and version == content_hash(filename):
            response.cache_control.no_cache = None
            response.cache_control.public = True
            response.cache_control.max_age = IMMUTABLE_MAX_AGE
            response.cache_control.immutable = True
        else:
            response.cache_control.no_cache = True
            response.cache_control.max_age = None
    return response
