"""GET /: the chat page, and the caching rules of its static files."""
from flask import (
    Blueprint,
    current_app,
    make_response,
    render_template,
    request,
    url_for,
)

ui = Blueprint('ui', __name__)

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


@ui.app_template_global()
def static_url(filename):
    """URL of a static file, versioned so a new release is fetched anew."""
    return url_for('static', filename=filename,
                   v=current_app.config['VERSION'])


@ui.route('/')
def index():
    response = make_response(render_template(
        'index.html', client_config=client_config()))
    response.headers['Content-Security-Policy'] = CONTENT_SECURITY_POLICY
    response.cache_control.no_cache = True
    return response


@ui.after_app_request
def cache_headers(response):
    """Vendor libraries change only with a release (and their URLs carry the
    version), so browsers may keep them; the client's own files and
    everything else are revalidated on every load (ETag/Last-Modified)."""
    response.headers.setdefault('X-Content-Type-Options', 'nosniff')
    if request.endpoint == 'static' and response.status_code in (200, 304):
        filename = (request.view_args or {}).get('filename', '')
        if filename.startswith('vendor/'):
            max_age = current_app.config['UI_VENDOR_MAX_AGE']
            response.cache_control.no_cache = None
            response.cache_control.public = True
            response.cache_control.max_age = max_age
        else:
            response.cache_control.no_cache = True
            response.cache_control.max_age = None
    return response
