"""The chat page in a real browser (Debian's headless Chromium, driven by
Playwright) against the whole platform through the load balancer: SPEC
section 4 "ui" and section 5, issue 4 point 4.

Two independent browser contexts play two users. What one does shows up
in the other's page without reloading it: in Socket.IO mode (the default)
through `updated_model` pushes, in polling mode (UI_SOCKETIO=0) through
the REST API. A long history (issue 14) is shown a page at a time: the
newest first, older pages as the reader scrolls up, without moving what
the reader sees, while pushes still arrive.

Settings the tests need are given to fresh instances through
``$MF_HOME/config/<service>.env``, which mfrun reads: a messages instance
with ALLOW_PRIVATE_LINKS=1 (so that it fetches the link page this test
serves on 127.0.0.1) and a ui instance with UI_SOCKETIO=0. Each replaces
the running instances without downtime, and is replaced by a plain one
afterwards: the platform is shared with the other test files.

The page's Content-Security-Policy forbids eval, which Playwright's
wait_for_function(<string>) needs; the waits here are expect() and
locators, which work without it, so no context bypasses the CSP.

A screenshot of the chat is saved as $MF_TEST_ARTIFACTS/chat.png
(default: <repo>/.test-home/artifacts/chat.png).
"""
import base64
import json
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import chromium
import pytest
import requests
from mfplatform import ROOT

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError as exc:      # a failure, never a skip: see `browser`
    expect = sync_playwright = None
    PLAYWRIGHT_IMPORT_ERROR = exc

ARTIFACTS = Path(os.environ.get('MF_TEST_ARTIFACTS')
                 or ROOT / '.test-home' / 'artifacts')
LIVE_MS = 1000           # an update shows up in another browser within this
PREVIEW_MS = 15000       # link previews are fetched in the background
SOCKET_MS = 20000        # a socketio instance restarting, clients back
HISTORY = 300            # messages stored for the paging test
HISTORY_PAGES = 8        # older pages it scrolls back at most
PLACE_PX = 3             # how far the message read may move (rounding)
LINK_TITLE = 'Microservices with Flask'
LINK_DESCRIPTION = 'A page the browser tests serve for link previews.'


# -- fixtures ----------------------------------------------------------


@pytest.fixture(scope='module')
def browser(platform, tmp_path_factory):
    if sync_playwright is None:
        pytest.fail(f'Playwright is not installed ({PLAYWRIGHT_IMPORT_ERROR});'
                    f' pip install -r microflack_admin/tests/requirements.txt')
    if not os.access(chromium.CHROMIUM, os.X_OK):
        pytest.fail(f'{chromium.CHROMIUM} is missing: install Debian\'s '
                    f'chromium (install/setup-host.sh --with-browser)')
    with sync_playwright() as playwright:
        # Over HTTPS, the platform's CA trusted (issue 19, TLS).
        browser = chromium.launch(playwright, ca_cert=platform.ca_cert,
                                  home=tmp_path_factory.mktemp('browser'))
        yield browser
        browser.close()


@pytest.fixture(scope='module')
def link_page():
    """The URL of a small page with a title and a description, served on
    127.0.0.1 for the messages service to fetch."""
    body = (f'<!doctype html><html><head><title>{LINK_TITLE}</title>'
            f'<meta name="description" content="{LINK_DESCRIPTION}">'
            f'</head><body><p>Hello.</p></body></html>').encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header('Content-Type', 'text/html; charset=utf-8')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}/flask-page'
    server.shutdown()
    server.server_close()


@contextmanager
def instance_with_settings(platform, service, settings):
    """The service served by one instance started with ``settings`` (extra
    NAME=value lines in $MF_HOME/config/<service>.env, read by mfrun) in
    place of the running ones; afterwards as many plain instances as
    before take over again. Both swaps are without downtime."""
    path = platform.home / 'config' / f'{service}.env'
    made_folder = not path.parent.exists()
    saved = path.read_text() if path.exists() else None
    before = platform.instances(service)
    path.parent.mkdir(exist_ok=True)
    path.write_text((saved or '') + ''.join(
        f'{name}={value}\n' for name, value in settings.items()))
    try:
        instance = platform.run('mfrun', service).stdout.strip()
    finally:
        if saved is not None:
            path.write_text(saved)
        else:
            path.unlink()
            if made_folder:
                path.parent.rmdir()
    try:
        wait_until_routed(platform, service, instance)
        for old in before:
            platform.run('mfkill', old)
        yield instance
    finally:
        started = [platform.run('mfrun', service).stdout.strip()
                   for _ in range(max(len(before), 1))]
        wait_until_routed(platform, service, started[-1])
        platform.run('mfkill', instance)


def wait_until_routed(platform, service, instance):
    def up():
        row = platform.stats().get((f'{service}_backend', instance))
        return row is not None and row['status'].startswith('UP')
    platform.wait_for(up, timeout=10, interval=0.1,
                      what=f'{instance} routed by the load balancer')


@pytest.fixture(scope='module')
def private_links(platform):
    """Messages are served by an instance that fetches 127.0.0.1 links."""
    with instance_with_settings(platform, 'messages',
                                {'ALLOW_PRIVATE_LINKS': '1'}):
        yield


# -- the page, as a user sees it -----------------------------------------


class ChatPage:
    """One user's browser (its own context: own storage, own socket) on
    the chat page, with what the page reported kept for the checks."""

    def __init__(self, browser, platform):
        self.platform = platform
        self.context = browser.new_context(
            viewport={'width': 1100, 'height': 680})
        self.page = self.context.new_page()
        self.problems = []       # uncaught errors, CSP violations
        self.websockets = []     # URLs of the WebSockets opened
        self.received = []       # WebSocket frames received (text)
        self.sent = []           # WebSocket frames sent (text)
        self.api_requests = []   # REST API requests made
        self.navigations = 0
        self.page.on('pageerror',
                     lambda error: self.problems.append(str(error)))
        self.page.on('console', self._console)
        self.page.on('websocket', self._websocket)
        self.page.on('request', self._request)
        self.page.on('framenavigated', self._navigated)
        self.page.goto(platform.lb_https + '/')
        self.nickname = None
        self.closed = False

    def _console(self, message):
        text = message.text
        if message.type == 'error' and ('Content Security Policy' in text
                                         or 'Refused to' in text):
            self.problems.append(text)

    def _websocket(self, websocket):
        self.websockets.append(websocket.url)
        websocket.on('framereceived', lambda payload: self.received.append(
            payload if isinstance(payload, str) else payload.decode()))
        websocket.on('framesent', lambda payload: self.sent.append(
            payload if isinstance(payload, str) else payload.decode()))

    def _request(self, request):
        if '/api/' in request.url:
            self.api_requests.append(f'{request.method} {request.url}')
        elif '/socket.io/' in request.url and request.method == 'POST':
            # Before the upgrade to a WebSocket, events go out by polling.
            self.sent.append(request.post_data or '')

    def _navigated(self, frame):
        if frame == self.page.main_frame:
            self.navigations += 1

    def config(self):
        return self.page.evaluate('() => window.MICROFLACK')

    def login(self, nickname, password='correct horse'):
        self.page.fill('#nickname', nickname)
        self.page.fill('#password', password)
        self.page.click('#login-button')
        expect(self.page.locator('#current-user')).to_have_text(
            nickname, timeout=10000)
        expect(self.page.locator('#post-form')).to_be_visible()
        self.nickname = nickname
        return self

    def token(self):
        kept = self.page.evaluate(
            "() => sessionStorage.getItem('microflack.session')")
        return json.loads(kept)['token'] if kept else None

    def user_id(self):
        payload = self.token().split('.')[1]
        return json.loads(base64.urlsafe_b64decode(payload + '=='))['user_id']

    def post(self, source):
        self.page.fill('#message-input', source)
        self.page.press('#message-input', 'Enter')

    def user(self, user_id):
        return self.page.locator(f'#user-list .user[data-id="{user_id}"]')

    def message(self, text):
        return self.page.locator('#message-list .message', has_text=text)

    def events_received(self, name):
        return [frame for frame in self.received if f'"{name}"' in frame]

    def events_sent(self, name):
        return [frame for frame in self.sent if f'"{name}"' in frame]

    def close(self):
        if not self.closed:
            self.closed = True
            self.context.close()


def nickname(prefix):
    return f'{prefix}_{uuid.uuid4().hex[:8]}'


def marker():
    return f'm{uuid.uuid4().hex[:10]}'


def auth(token):
    return {'Authorization': f'Bearer {token}'}


def online(locator, timeout=LIVE_MS * 5):
    expect(locator).to_have_class(re.compile(r'\bonline\b'), timeout=timeout)


def offline(locator, timeout):
    """The user list shows who is online: an offline user is not in it."""
    expect(locator).to_have_count(0, timeout=timeout)


def shows_within(locator, text, timeout_ms):
    """Waits for ``locator`` to have ``text``; returns the seconds taken."""
    started = time.monotonic()
    expect(locator).to_have_text(text, timeout=timeout_ms)
    return time.monotonic() - started


def save_screenshot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


# -- the tests -------------------------------------------------------------


def test_two_users_chat_in_real_time(browser, platform, private_links,
                                     link_page):
    lb, http = platform.lb, platform.http
    alice = ChatPage(browser, platform)
    bob = ChatPage(browser, platform)
    try:
        assert alice.config()['socketio'] is True
        assert alice.page.evaluate(
            '() => MicroFlack.app.transport instanceof '
            'MicroFlack.SocketTransport')

        # Both register and log in through the form; each sees the other
        # online (pushed: nobody reloads).
        alice.login(nickname('alice'))
        bob.login(nickname('bob'))
        alice_id, bob_id = alice.user_id(), bob.user_id()
        online(alice.user(bob_id))
        online(bob.user(alice_id))
        online(alice.user(alice_id))
        expect(alice.user(alice_id)).to_have_class(re.compile(r'\bme\b'))
        # The page's WebSocket is allowed by its CSP (connect-src 'self').
        # Over TLS: the page came over HTTPS.
        assert any(url.startswith(
            platform.lb_https.replace('https:', 'wss:') + '/socket.io/')
            for url in alice.websockets), alice.websockets
        assert alice.events_sent('ping_user')

        # Alice posts markdown with a link: Bob sees it rendered within a
        # second, pushed to his page (no REST request of his), then with
        # the link's preview.
        first = marker()
        bob_requests = len(bob.api_requests)
        alice.post(f'Look at *{first}* here: {link_page}')
        seconds = shows_within(bob.message(first).locator('.body em'),
                               first, LIVE_MS)
        assert seconds < LIVE_MS / 1000
        assert bob.api_requests[bob_requests:] == []
        expect(alice.page.locator('#message-input')).to_have_value('')
        expect(alice.message(first)).to_have_class(re.compile(r'\bmine\b'))
        expect(bob.message(first).locator('.author')).to_have_text(
            alice.nickname)
        link = bob.message(first).locator('.body a').first
        expect(link).to_have_attribute('href', link_page)
        preview = bob.message(first).locator('.body blockquote')
        expect(preview.locator('a')).to_have_text(LINK_TITLE,
                                                  timeout=PREVIEW_MS)
        expect(preview).to_contain_text(LINK_DESCRIPTION)

        # Bob answers; Alice sees it the same way.
        reply = marker()
        bob.post(f'Thanks, **{reply}**!')
        shows_within(alice.message(reply).locator('.body strong'), reply,
                     LIVE_MS)
        expect(alice.message(first).locator('.body blockquote a')).to_have_text(
            LINK_TITLE, timeout=PREVIEW_MS)
        path = save_screenshot(alice.page, 'chat.png')
        assert path.stat().st_size > 10000

        # An edit through the API, with Alice's token from her page.
        message_id = bob.message(first).get_attribute('data-id')
        edited = marker()
        rv = http.put(f'{lb}/api/messages/{message_id}', timeout=10,
                      headers=auth(alice.token()),
                      json={'source': f'Edited: *{edited}* {link_page}'})
        assert rv.status_code == 204, rv.text
        edited_body = bob.page.locator(
            f'#message-list .message[data-id="{message_id}"] .body')
        shows_within(edited_body.locator('em'), edited, LIVE_MS)
        shows_within(alice.message(edited).locator('.body em'), edited,
                     LIVE_MS)
        expect(edited_body.locator('blockquote a')).to_have_text(
            LINK_TITLE, timeout=PREVIEW_MS)

        # The socketio service restarts: both pages say they are cut off;
        # what was posted meanwhile shows up once they are back, and they
        # announce themselves again (ping_user), so both stay online.
        instances = len(platform.instances('socketio'))
        alice_pings = len(alice.events_sent('ping_user'))
        platform.run('mfkill', 'socketio')
        expect(alice.page.locator('#connection-status')).to_be_visible(
            timeout=5000)
        missed = marker()
        rv = http.post(f'{lb}/api/messages', timeout=10,
                       headers=auth(bob.token()),
                       json={'source': f'While you were away: *{missed}*'})
        assert rv.status_code == 201, rv.text
        for _ in range(max(instances, 1)):
            platform.run('mfrun', 'socketio')
        shows_within(alice.message(missed).locator('.body em'), missed,
                     SOCKET_MS)
        expect(alice.page.locator('#connection-status')).to_be_hidden(
            timeout=SOCKET_MS)
        expect(bob.page.locator('#connection-status')).to_be_hidden(
            timeout=SOCKET_MS)
        assert len(alice.events_sent('ping_user')) > alice_pings
        online(alice.user(bob_id))
        online(bob.user(alice_id))
        after_restart = marker()
        alice.post(f'Back: *{after_restart}*')
        shows_within(bob.message(after_restart).locator('.body em'),
                     after_restart, LIVE_MS)

        # Bob closes his browser: Alice sees him go offline (the list
        # shows who is online: he leaves it).
        bob.close()
        offline(alice.user(bob_id), timeout=5000)

        # Alice's token is revoked: her next ping is answered with
        # expired_token, and her page logs out. The ping is the one the
        # page sends every 30 s; the test does not wait for it but calls
        # it (again, until the revocation reached the users service).
        rv = http.delete(f'{lb}/api/tokens', headers=auth(alice.token()),
                         timeout=10)
        assert rv.status_code == 204
        deadline = time.monotonic() + 10
        while alice.page.locator('#login-form').is_hidden():
            assert time.monotonic() < deadline, 'still logged in'
            alice.page.evaluate('() => MicroFlack.app.transport.ping()')
            alice.page.wait_for_timeout(250)
        assert alice.events_received('expired_token')
        assert alice.token() is None
        expect(alice.page.locator('#session-info')).to_be_hidden()
        expect(alice.page.locator('#post-form')).to_be_hidden()
        # Still showing the chat, as anybody may see it.
        expect(alice.message(edited)).to_have_count(1)

        assert alice.navigations == 1 and bob.navigations == 1
        assert alice.problems == [] and bob.problems == []
    finally:
        alice.close()
        bob.close()


def test_polling_mode(browser, platform):
    with instance_with_settings(platform, 'ui', {'UI_SOCKETIO': '0'}):
        carol = ChatPage(browser, platform)
        dave = ChatPage(browser, platform)
        try:
            assert carol.config()['socketio'] is False
            assert carol.page.evaluate(
                "() => typeof window.io === 'undefined' && "
                'MicroFlack.app.transport instanceof '
                'MicroFlack.PollingTransport')
            carol.login(nickname('carol'))
            dave.login(nickname('dave'))
            online(carol.user(dave.user_id()))
            text = marker()
            carol.post(f'Polling *{text}*')
            # Polled every second.
            shows_within(dave.message(text).locator('.body em'), text, 3000)
            shows_within(carol.message(text).locator('.body em'), text, 3000)
            assert carol.websockets == [] and dave.websockets == []
            assert carol.problems == [] and dave.problems == []
        finally:
            carol.close()
            dave.close()


# -- a long history ------------------------------------------------------

# Scrolls the message list to the top and says what the reader sees there
# then: the first message (its id and where it is on the screen), how
# many are in the page, and the history's state. A MutationObserver on
# #messages keeps when and how the next messages came (window.mfProbe).
TO_THE_TOP = """() => {
  const list = document.getElementById('message-list');
  const box = document.getElementById('messages');
  const probe = {records: 0, added: 0, shownAfter: null,
                 started: performance.now()};
  window.mfProbe = probe;
  if (window.mfObserver) { window.mfObserver.disconnect(); }
  window.mfObserver = new MutationObserver((records) => {
    probe.shownAfter = probe.shownAfter === null
      ? performance.now() - probe.started : probe.shownAfter;
    for (const record of records) {
      probe.records += 1;
      probe.added += record.addedNodes.length;
    }
  });
  window.mfObserver.observe(box, {childList: true});
  list.scrollTop = 0;
  const first = box.querySelector('.message');
  return {id: first.dataset.id, top: first.getBoundingClientRect().top,
          count: box.children.length,
          state: document.getElementById('history-status').dataset.state};
}"""

# Where message `id` is on the screen, and the list's state.
PLACE_OF = """(id) => {
  const element = document.querySelector(
    `#messages .message[data-id="${id}"]`);
  return {top: element.getBoundingClientRect().top,
          count: document.getElementById('messages').children.length,
          scrollTop: document.getElementById('message-list').scrollTop,
          state: document.getElementById('history-status').dataset.state,
          probe: window.mfProbe};
}"""

# The first message in view (its id and where it is).
FIRST_IN_VIEW = """() => {
  const list = document.getElementById('message-list');
  const top = list.getBoundingClientRect().top;
  for (const element of document.querySelectorAll('#messages .message')) {
    const rect = element.getBoundingClientRect();
    if (rect.bottom > top) {
      return {id: element.dataset.id, top: rect.top,
              scrollTop: list.scrollTop};
    }
  }
  return null;
}"""


def post_messages(platform, token, sources, threads=8):
    """POSTs the sources through the load balancer from a few threads (a
    few hundred take a second or two); returns the ids made, ascending."""
    local = threading.local()

    def post(source):
        if not hasattr(local, 'session'):
            local.session = requests.Session()
            local.session.trust_env = False
        rv = local.session.post(f'{platform.lb}/api/messages', timeout=30,
                                headers=auth(token), json={'source': source})
        assert rv.status_code == 201, rv.text
        return rv.json()['id']

    with ThreadPoolExecutor(threads) as pool:
        return sorted(pool.map(post, sources))


def api_calls(chat, path):
    """The page's GETs of ``path`` so far: the query of each, as a dict."""
    calls = []
    for request in chat.api_requests:
        method, url = request.split(' ', 1)
        parts = urlsplit(url)
        if method == 'GET' and parts.path == path:
            calls.append({name: values[0] for name, values
                          in parse_qs(parts.query).items()})
    return calls


def wait_for_more(chat, message_id, count, timeout=10):
    """Waits until the list holds more than ``count`` messages (an older
    page came) or the history's beginning shows; returns PLACE_OF."""
    deadline = time.monotonic() + timeout
    while True:
        place = chat.page.evaluate(PLACE_OF, message_id)
        if place['count'] > count and place['state'] != 'loading':
            return place
        assert time.monotonic() < deadline, f'no older page: {place}'
        chat.page.wait_for_timeout(20)


def test_long_history_in_pages(browser, platform):
    """Issue 14: a few hundred messages are shown a page at a time."""
    token = platform.user_with_token(nickname('writer'))
    tag = marker()
    ids = post_messages(platform, token,
                        [f'{tag} number {n:04d}' for n in range(HISTORY)])
    reader = ChatPage(browser, platform)
    try:
        reader.login(nickname('reader'))
        # First load, logged in (the session is kept in the tab).
        reader.api_requests.clear()
        reader.page.reload()
        expect(reader.page.locator('#post-form')).to_be_visible()
        messages = reader.page.locator('#messages .message')
        newest = messages.last
        expect(newest).to_have_attribute('data-id', str(ids[-1]))
        expect(newest).to_be_in_viewport()
        expect(reader.page.locator('#message-input')).to_be_editable()
        expect(reader.page.locator('#message-input')).to_be_focused()
        first_count = messages.count()
        assert first_count < HISTORY, first_count   # a page, not everything
        first_page = api_calls(reader, '/api/messages')[0]
        assert 20 <= int(first_page['limit']) <= 100, first_page
        assert set(first_page) == {'limit'}, first_page

        # Scrolled to the top, older pages come, each above the message
        # the reader sees, which stays where it was.
        shown = []
        for _ in range(HISTORY_PAGES):
            top = reader.page.evaluate(TO_THE_TOP)
            if top['state'] == 'complete':
                break
            place = wait_for_more(reader, top['id'], top['count'])
            assert abs(place['top'] - top['top']) <= PLACE_PX, (top, place)
            probe = place['probe']
            # one insertion for the page (a record per DOM insertion)
            assert probe['records'] == 1, probe
            assert probe['added'] == place['count'] - top['count'], probe
            shown.append(round(probe['shownAfter']))
        assert len(shown) >= 3, shown
        older = api_calls(reader, '/api/messages')[1:]
        befores = [int(query['before']) for query in older if 'before' in query]
        assert befores == sorted(befores, reverse=True), befores
        assert len(befores) == len(set(befores)), befores   # never twice
        print(f'older pages shown after reaching the top (ms): {shown}')

        # Scrolled back, a message from someone else appears below
        # without moving the reader's view; the notice shows, and takes
        # the reader down to it.
        seen = reader.page.evaluate(FIRST_IN_VIEW)
        pushed = marker()
        rv = platform.http.post(f'{platform.lb}/api/messages', timeout=10,
                                headers=auth(token),
                                json={'source': f'Later: *{pushed}*'})
        assert rv.status_code == 201, rv.text
        expect(reader.message(pushed)).to_have_count(1, timeout=LIVE_MS * 3)
        after = reader.page.evaluate(PLACE_OF, seen['id'])
        assert abs(after['top'] - seen['top']) <= PLACE_PX, (seen, after)
        notice = reader.page.locator('#new-messages')
        expect(notice).to_be_visible()
        notice.click()
        expect(reader.message(pushed)).to_be_in_viewport()
        expect(notice).to_be_hidden()

        # The page asked for its authors by id, never for every user, and
        # never for every message.
        users = api_calls(reader, '/api/users')
        assert any('ids' in query for query in users), users
        assert all({'ids', 'limit', 'updated_since'} & set(query)
                   for query in users), users
        assert all({'limit', 'before', 'updated_since'} & set(query)
                   for query in api_calls(reader, '/api/messages'))
        assert reader.problems == []
    finally:
        reader.close()

