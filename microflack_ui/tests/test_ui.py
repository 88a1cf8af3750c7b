import base64
import hashlib
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from microflack_common.testing import ApiClient

ROOT = Path(__file__).resolve().parent.parent
VERSION = (ROOT / 'VERSION').read_text().strip()
STATIC = ROOT / 'static'
VENDOR = STATIC / 'vendor'
CLIENT = STATIC / 'client'
ENTRY = '/static/client/main.js'
BUILD_HINT = 'static/vendor/ is missing or stale: run `npm ci && npm run build`'
CONTENT_TYPES = {
    '.js': ('text/javascript', 'application/javascript'),
    '.css': ('text/css',),
    '.svg': ('image/svg+xml',),
}
ANY_URL = re.compile(r'https?://', re.IGNORECASE)
A_YEAR = 31536000


def content_hash(path):
    """What a static URL's ?v= must be: the start of the file's SHA-256."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class PageParser(HTMLParser):
    """Collects the URLs a page loads, its JSON configuration block, its
    import map, its module scripts and module preloads, and the text of
    every inline script element by type."""

    def __init__(self):
        super().__init__()
        self.urls = []
        self.config_text = None
        self.modules = []            # <script type="module" src>
        self.preloads = []           # <link rel="modulepreload" href>
        self.inline = []             # (type, text) of inline scripts
        self._script = None          # (type, id) of the script read

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'script' and attrs.get('src'):
            self.urls.append(attrs['src'])
            if attrs.get('type') == 'module':
                self.modules.append(attrs['src'])
        if tag == 'link' and attrs.get('href'):
            self.urls.append(attrs['href'])
            if attrs.get('rel') == 'modulepreload':
                self.preloads.append(attrs['href'])
        if tag in ('img', 'iframe', 'source') and attrs.get('src'):
            self.urls.append(attrs['src'])
        if tag == 'script' and not attrs.get('src'):
            self._script = (attrs.get('type') or '', attrs.get('id'))
            self.inline.append((self._script[0], ''))

    def handle_endtag(self, tag):
        self._script = None

    def handle_data(self, data):
        if self._script is None:
            return
        kind, text = self.inline[-1]
        self.inline[-1] = (kind, text + data)
        if self._script[1] == 'microflack-config':
            assert self._script[0] == 'application/json'
            self.config_text = (self.config_text or '') + data

    def inline_scripts(self, kind):
        return [text for type_, text in self.inline if type_ == kind]

    def import_map(self):
        texts = self.inline_scripts('importmap')
        assert len(texts) == 1, texts
        return json.loads(texts[0])['imports']


def parse_page(client):
    rv = client.get('/')
    assert rv.status == 200
    parser = PageParser()
    parser.feed(rv.data.decode())
    return rv, parser


def static_paths(urls):
    return {urlsplit(url).path for url in urls}


def client_modules():
    """The client's modules, as the page's paths: /static/client/..."""
    return sorted(f'/static/{path.relative_to(STATIC).as_posix()}'
                  for path in CLIENT.rglob('*.js'))


def client_sources():
    """Each module's path under static/ and its text."""
    return {path.relative_to(STATIC).as_posix(): path.read_text()
            for path in CLIENT.rglob('*.js')}


def built_vendor_files():
    """The vendor files the page loads (source maps come along for the
    browser's developer tools and are not loaded by the page)."""
    if not VENDOR.is_dir():
        return set()
    return {f'/static/vendor/{path.name}' for path in VENDOR.iterdir()
            if not path.name.endswith('.map')}


def test_vendor_files_are_built():
    assert built_vendor_files(), BUILD_HINT


def test_index_is_html(client):
    rv = client.get('/')
    assert rv.status == 200
    assert rv.headers['Content-Type'].startswith('text/html')
    text = rv.data.decode()
    assert text.lstrip().lower().startswith('<!doctype html>')
    for hook in ('id="login-form"', 'id="nickname"', 'id="password"',
                 'id="login-button"', 'id="logout-button"',
                 'id="user-list"', 'id="message-list"',
                 'id="message-input"', 'id="post-button"'):
        assert hook in text


def test_index_has_the_config_block(app, client):
    _, page = parse_page(client)
    assert page.config_text is not None
    assert json.loads(page.config_text) == {
        'socketio': True, 'version': app.config['VERSION'],
        'ping_interval': 30}
    assert app.config['VERSION'] == VERSION


def test_socketio_mode_loads_the_socketio_client(client):
    _, page = parse_page(client)
    order = [urlsplit(url).path for url in page.urls]
    # socket.io-client (window.io) comes before the client, which uses it
    assert order.index(ENTRY) > \
        order.index('/static/vendor/socket.io.min.js')


def test_polling_mode_does_without_the_socketio_client(polling_client):
    rv, page = parse_page(polling_client)
    assert json.loads(page.config_text)['socketio'] is False
    paths = static_paths(page.urls)
    assert ENTRY in paths
    assert not any('socket.io' in path for path in paths)
    assert 'socket.io' not in rv.data.decode()


@pytest.fixture
def reload_config(monkeypatch):
    """reload_config(**env): the config module read again with these
    environment variables (None: unset); read again as it was after."""
    import importlib

    from microflack_ui import config
    def reload(**env):
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return importlib.reload(config).Config
    yield reload
    monkeypatch.undo()
    importlib.reload(config)


def test_ui_socketio_defaults_to_true(reload_config):
    assert reload_config(UI_SOCKETIO=None).UI_SOCKETIO is True
    assert reload_config(UI_SOCKETIO='0').UI_SOCKETIO is False
    assert reload_config(UI_SOCKETIO='false').UI_SOCKETIO is False
    assert reload_config(UI_SOCKETIO='1').UI_SOCKETIO is True


def test_ping_interval_setting(reload_config):
    assert reload_config(UI_PING_INTERVAL=None).UI_PING_INTERVAL == 30
    assert reload_config(UI_PING_INTERVAL='2.5').UI_PING_INTERVAL == 2.5
    from microflack_common.config import ConfigError
    for bad in ('0', '-1', 'soon', 'inf', 'nan'):
        with pytest.raises(ConfigError, match='UI_PING_INTERVAL'):
            reload_config(UI_PING_INTERVAL=bad)


def test_ping_interval_is_rendered_into_the_page(etcd, http):
    from microflack_ui.app import create_app
    from microflack_ui.config import TestConfig

    class Config(TestConfig):
        UI_PING_INTERVAL = 2.5
    _, page = parse_page(ApiClient(create_app(Config, etcd=etcd, http=http)))
    assert json.loads(page.config_text)['ping_interval'] == 2.5


def test_service_url_defaults_to_root(app):
    assert app.config['SERVICE_NAME'] == 'ui'
    assert app.config['SERVICE_URL'] == '/'


def test_index_references_client_and_vendor_files(client):
    _, page = parse_page(client)
    paths = static_paths(page.urls)
    assert ENTRY in paths
    assert '/static/app.css' in paths
    for name in ('jquery.min.js', 'underscore-umd-min.js', 'backbone-min.js',
                 'bootstrap.min.css'):
        assert f'/static/vendor/{name}' in paths
    # the client comes after the libraries it uses
    order = [urlsplit(url).path for url in page.urls]
    assert order.index(ENTRY) > \
        order.index('/static/vendor/backbone-min.js') > \
        order.index('/static/vendor/underscore-umd-min.js')
    assert order.index('/static/vendor/backbone-min.js') > \
        order.index('/static/vendor/jquery.min.js')


def test_every_built_vendor_file_is_referenced(client):
    _, page = parse_page(client)
    vendor = built_vendor_files()
    assert vendor, BUILD_HINT
    assert vendor <= static_paths(page.urls)


@pytest.mark.parametrize('use_socketio', [False, True])
def test_every_referenced_url_is_served(client, polling_client,
                                        use_socketio):
    test_client = client if use_socketio else polling_client
    _, page = parse_page(test_client)
    assert page.urls
    for url in page.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        assert parts.path.startswith('/static/'), url
        assert parts.query == \
            f'v={content_hash(ROOT / parts.path.lstrip("/"))}', url
        rv = test_client.get(url)
        assert rv.status == 200, f'{url}: {rv.status}; {BUILD_HINT}'
        suffix = Path(parts.path).suffix
        content_type = rv.headers['Content-Type'].split(';')[0]
        assert content_type in CONTENT_TYPES[suffix], url
        assert rv.data


def test_no_external_urls_in_page_and_client(client, polling_client):
    for test_client in (client, polling_client):
        assert not ANY_URL.search(test_client.get('/').data.decode())
    for path in [*client_modules(), '/static/app.css']:
        rv = client.get(path)
        assert rv.status == 200
        assert not ANY_URL.search(rv.data.decode()), path


def test_stylesheets_load_nothing_from_elsewhere():
    assert built_vendor_files(), BUILD_HINT
    remote = re.compile(r'''(url\(\s*['"]?|@import\s+['"]?)\s*(https?:)?//''',
                        re.IGNORECASE)
    for path in [STATIC / 'app.css', *VENDOR.glob('*.css')]:
        assert not remote.search(path.read_text()), path.name


def csp_hash(text):
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def script_sources(policy):
    directives = dict(directive.strip().split(' ', 1)
                      for directive in policy.split(';'))
    return directives['script-src'].split()


def test_page_security_headers(client):
    rv, page = parse_page(client)
    policy = rv.headers['Content-Security-Policy']
    # scripts from this origin, and the one inline script, the import
    # map, by its hash
    import_map, = page.inline_scripts('importmap')
    assert script_sources(policy) == \
        ["'self'", f"'sha256-{csp_hash(import_map)}'"]
    # 'self' covers the same origin's WebSockets (Socket.IO) too
    assert "connect-src 'self'" in policy
    assert 'unsafe-inline' not in policy
    assert 'unsafe-eval' not in policy
    assert rv.headers['X-Content-Type-Options'] == 'nosniff'
    assert 'no-cache' in rv.headers['Cache-Control']


@pytest.mark.parametrize('use_socketio', [False, True])
def test_the_import_map_names_every_module_by_its_hashed_url(
        client, polling_client, use_socketio):
    """A module imports another by its plain URL; the import map sends
    that to the URL with the module's content hash, as the page names
    every other static file, so each module is cached for a year."""
    test_client = client if use_socketio else polling_client
    _, page = parse_page(test_client)
    modules = client_modules()
    assert ENTRY in modules and '/static/client/chat.js' in modules
    imports = page.import_map()
    assert imports == {
        path: f'{path}?v={content_hash(ROOT / path.lstrip("/"))}'
        for path in modules}
    for url in imports.values():
        rv = test_client.get(url)
        assert rv.status == 200, url
        assert rv.headers['Content-Type'].split(';')[0] in \
            CONTENT_TYPES['.js']
        assert_immutable(rv)
    # The entry is the page's one module script; every other module is
    # preloaded by the same URL its import resolves to.
    assert page.modules == [imports[ENTRY]]
    assert sorted(page.preloads) == sorted(
        url for path, url in imports.items() if path != ENTRY)


def test_the_import_map_comes_before_any_module(client):
    """A browser ignores an import map that comes after the first module
    is fetched (a preload counts)."""
    text = client.get('/').data.decode()
    where = text.index('<script type="importmap">')
    assert where < text.index('rel="modulepreload"')
    assert where < text.index('type="module"')


# What a module imports: `import ... from '<specifier>';`,
# `import '<specifier>';`, `export ... from '<specifier>';`.
IMPORT = re.compile(r"""^(?:(?:import|export)\b[^;'"]*?\bfrom\s*|import\s*)"""
                    r"""['"]([^'"]+)['"]\s*;""", re.MULTILINE)


def test_every_import_is_a_module_the_import_map_names(client):
    """Imports are relative URLs of the client's own modules (no bare
    names: the map names none, and Node resolves these as they are);
    each one resolves to a key of the import map, so no module is ever
    fetched without its hash."""
    _, page = parse_page(client)
    imports = page.import_map()
    found = 0
    for name, source in client_sources().items():
        assert 'import(' not in source, name
        for specifier in IMPORT.findall(source):
            assert specifier.startswith('./') and \
                specifier.endswith('.js'), (name, specifier)
            assert urljoin(f'/static/{name}', specifier) in imports, \
                (name, specifier)
            found += 1
    assert found > len(imports)


def test_the_import_map_is_the_only_inline_script(client, polling_client):
    """Besides the JSON configuration (a data block, which runs nothing):
    the CSP allows the import map by its hash and nothing else inline."""
    for test_client in (client, polling_client):
        rv, page = parse_page(test_client)
        assert sorted(kind for kind, _ in page.inline) == \
            ['application/json', 'importmap']
        import_map, = page.inline_scripts('importmap')
        policy = rv.headers['Content-Security-Policy']
        assert [source for source in script_sources(policy)
                if source.startswith("'sha")] == \
            [f"'sha256-{csp_hash(import_map)}'"]


def assert_immutable(rv):
    assert rv.headers['Cache-Control'] == \
        f'public, max-age={A_YEAR}, immutable'


def assert_revalidated(rv):
    assert rv.response.cache_control.no_cache
    assert rv.response.cache_control.max_age is None
    assert not rv.response.cache_control.immutable
    assert not rv.response.cache_control.public


@pytest.mark.parametrize('use_socketio', [False, True])
def test_everything_the_page_loads_is_cached_for_a_year(
        client, polling_client, use_socketio):
    """Vendor libraries, the client's modules, app.css and the favicon
    alike: their URLs name their bytes."""
    test_client = client if use_socketio else polling_client
    _, page = parse_page(test_client)
    assert {'/static/favicon.svg', ENTRY, '/static/client/chat.js',
            '/static/app.css', '/static/vendor/jquery.min.js'} <= \
        static_paths(page.urls)
    for url in page.urls:
        rv = test_client.get(url)
        assert rv.status == 200, url
        assert_immutable(rv)


@pytest.mark.parametrize('name', ['client/main.js', 'client/chat.js',
                                  'app.css', 'favicon.svg',
                                  'vendor/jquery.min.js'])
@pytest.mark.parametrize('query', [
    '', '?v=', f'?v={VERSION}', '?v={other_hash}', '?v={own_hash}0'])
def test_any_other_url_of_a_static_file_is_revalidated(client, name, query):
    """Without its current hash, a URL may hold other bytes tomorrow (an
    old page's URL, a hand-written one): browsers must ask every time."""
    assert built_vendor_files(), BUILD_HINT
    other = 'app.css' if name != 'app.css' else 'client/main.js'
    url = f'/static/{name}' + query.format(
        own_hash=content_hash(STATIC / name),
        other_hash=content_hash(STATIC / other))
    rv = client.get(url)
    assert rv.status == 200
    assert rv.data == (STATIC / name).read_bytes()
    assert_revalidated(rv)
    # Revalidated with the ETag, as a browser sends it back: strong, or
    # weakened by the load balancer when it compressed the answer.
    etag = rv.headers['ETag']
    for sent in (etag, f'W/{etag}'):
        again = client.get(url, headers={'If-None-Match': sent})
        assert again.status == 304, sent
        assert_revalidated(again)


def test_a_revalidated_current_url_stays_immutable(client):
    url = f'{ENTRY}?v={content_hash(ROOT / ENTRY.lstrip("/"))}'
    etag = client.get(url).headers['ETag']
    rv = client.get(url, headers={'If-None-Match': etag})
    assert rv.status == 304
    assert_immutable(rv)


def page_url(app, filename):
    with app.test_request_context():
        from microflack_ui.views import static_url
        return static_url(filename)


def test_a_changed_file_gets_a_new_url(app, client, tmp_path):
    """A rebuild that keeps VERSION (or `flask run` while editing): the
    new bytes get a new URL, and the old URL no longer claims a year. For
    a module, that URL is in the import map, whose CSP hash changes with
    it; the other modules keep theirs."""
    app.static_folder = str(tmp_path)
    (tmp_path / 'client').mkdir()
    entry = tmp_path / 'client' / 'main.js'
    entry.write_text("import './chat.js';\n")
    script = tmp_path / 'client' / 'chat.js'
    script.write_text('console.log(1);\n')
    first = page_url(app, 'client/chat.js')
    assert first == f'/static/client/chat.js?v={content_hash(script)}'
    assert_immutable(client.get(first))
    rv, page = parse_page(client)
    assert page.import_map()['/static/client/chat.js'] == first
    entry_url = page.import_map()[ENTRY]
    policy = rv.headers['Content-Security-Policy']

    # The same size: only the modification time tells (moved on by a
    # second, for a file system with a coarse clock).
    script.write_text('console.log(2);\n')
    stat = script.stat()
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = page_url(app, 'client/chat.js')
    assert second == f'/static/client/chat.js?v={content_hash(script)}' \
        != first
    rv = client.get(first)
    assert rv.data == b'console.log(2);\n'
    assert_revalidated(rv)
    assert_immutable(client.get(second))
    rv, page = parse_page(client)
    assert page.import_map() == {'/static/client/chat.js': second,
                                 ENTRY: entry_url}
    import_map, = page.inline_scripts('importmap')
    assert rv.headers['Content-Security-Policy'] != policy
    assert f"'sha256-{csp_hash(import_map)}'" in \
        script_sources(rv.headers['Content-Security-Policy'])


def test_each_file_is_hashed_once(app, client, monkeypatch):
    from microflack_ui import views
    hashed = []
    real = views.file_hash
    monkeypatch.setattr(views, 'file_hash',
                        lambda path: hashed.append(path) or real(path))
    for _ in range(3):
        _, page = parse_page(client)
        for url in page.urls:
            assert_immutable(client.get(url))
    assert sorted(hashed) == sorted(set(hashed))
    assert len(hashed) == len(static_paths(page.urls))


def test_a_missing_file_gets_no_hash(app):
    """Nor does a file outside static/ (its hash is nobody's business)."""
    assert page_url(app, 'nope.js') == '/static/nope.js'
    assert page_url(app, '../wsgi.py') == '/static/../wsgi.py'


def test_only_message_html_is_inserted_as_html():
    """The client writes untrusted text as text (textContent, .text());
    HTML goes in once, in message-element.js, for the messages service's
    sanitised `html`, with innerHTML (which runs no script, where jQuery's
    .html() may)."""
    sources = client_sources()
    assert sources
    for name, source in sources.items():
        assert re.findall(r'\.html\(([^)]*)\)', source) == [], name
        sink = name == 'client/message-element.js'
        assert re.findall(r'\.innerHTML\s*=\s*([^;\n]*)', source) == (
            ['message.html'] if sink else []), name
        for sink in ('outerHTML', 'insertAdjacentHTML', 'document.write',
                     'createContextualFragment', 'parseHTML'):
            assert sink not in source, name


def test_health(client):
    rv = client.get('/health')
    assert rv.status == 200
    assert rv.json['service'] == 'ui'
    assert rv.json['status'] == 'ok'


@pytest.mark.parametrize('url', ['/nope', '/api/nothing', '/static/nope.js'])
def test_unknown_paths_are_json_404(client, url):
    rv = client.get(url)
    assert rv.status == 404
    assert rv.headers['Content-Type'] == 'application/json'
    assert rv.json == {'error': 'not found'}


def test_index_only_answers_get(client):
    rv = client.post('/')
    assert rv.status == 405
    assert rv.json['error']
