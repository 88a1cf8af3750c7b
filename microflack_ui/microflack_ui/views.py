"""GET /: the chat page, and the caching rules of its static files."""
import base64
import hashlib
import os
from pathlib import Path
from stat import S_ISREG

from flask import (
    Blueprint,
    current_app,
    make_response,
    render_template,
    request,
    url_for,
)
from jinja2.utils import htmlsafe_json_dumps
from werkzeug.security import safe_join

ui = Blueprint('ui', __name__)

# A static URL carries its file's content hash (?v=<hash>), so the bytes
# behind such a URL never change: browsers may keep them for a year.
HASH_LENGTH = 16
IMMUTABLE_MAX_AGE = 365 * 24 * 3600


def content_security_policy(script_hashes=()):
    """The page's Content-Security-Policy. Everything the page loads comes
    from this origin (the load balancer). The only inline scripts that run
    are those whose SHA-256 (base64) is in ``script_hashes``: the import
    map's; any other, one a message's HTML smuggled in say, would not. The
    client configuration is a JSON data block, not a script. (eval is
    refused too: browser tests using Playwright's wait_for_function need a
    context made with bypass_csp=True.)"""
    return '; '.join([
        "default-src 'self'",
        ' '.join(["script-src 'self'",
                  *(f"'sha256-{digest}'" for digest in script_hashes)]),
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
    """What the client (static/client/) needs to know, rendered into the
    page as JSON."""
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
    state.app.extensions['microflack_content_hashes'] = ContentHashes()


def content_hash(filename):
    """The current content hash of a static file (None: no such file)."""
    path = safe_join(current_app.static_folder, filename)
    if path is None:
        return None
    return current_app.extensions['microflack_content_hashes'].of(path)


@ui.app_template_global()
def static_url(filename):
    """URL of a static file, carrying its content hash: a changed file gets
    a new URL, which browsers fetch anew."""
    return url_for('static', filename=filename, v=content_hash(filename))


# The chat client: ES modules under static/client/, served as they are;
# the page loads the entry, which imports the others.
CLIENT_FOLDER = 'client'
CLIENT_ENTRY = 'client/main.js'


def client_modules():
    """The client's modules (paths under static/), sorted."""
    folder = Path(current_app.static_folder)
    return sorted(path.relative_to(folder).as_posix()
                  for path in (folder / CLIENT_FOLDER).rglob('*.js')
                  if path.is_file())


def import_map(modules):
    """The page's import map, as the text of its script element.

    A module imports another by its plain relative URL (what a browser
    resolves it to also works without this map, and in Node); the map
    sends each such URL to the one carrying the module's content hash,
    so that every module is cached like every other static file, and a
    changed module gets a new URL while the others keep theirs."""
    return htmlsafe_json_dumps({'imports': {
        url_for('static', filename=module): static_url(module)
        for module in modules}}, sort_keys=True)


def script_hash(text):
    """The SHA-256 (base64) of an inline script's text, by which a CSP
    allows it to run."""
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b64encode(digest).decode()


@ui.route('/')
def index():
    modules = client_modules()
    imports = import_map(modules)
    response = make_response(render_template(
        'index.html', client_config=client_config(), import_map=imports,
        # Fetched at once, in parallel, rather than one level of imports
        # after the other (the entry is the page's module script).
        module_preloads=[module for module in modules
                         if module != CLIENT_ENTRY],
        client_entry=CLIENT_ENTRY))
    response.headers['Content-Security-Policy'] = \
        content_security_policy([script_hash(imports)])
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
