"""Markdown rendering and sanitising (render.py), and its use by the API."""
import importlib
import threading
import time

import pytest
from markdown_it import ruler

from microflack_messages import render as render_module
from microflack_messages.render import render


@pytest.mark.parametrize('source,html', [
    ('hello *world*!', 'hello <em>world</em>!'),
    ('**strong** _em_ `code`',
     '<strong>strong</strong> <em>em</em> <code>code</code>'),
    ('<b>b</b> <i>i</i> <abbr title="t">a</abbr> <acronym>ac</acronym>',
     '<b>b</b> <i>i</i> <abbr title="t">a</abbr> <acronym>ac</acronym>'),
    # other tags are stripped, their text kept
    ('# Title', 'Title'),
    ('<div>in a <span>div</span></div>', 'in a div'),
    ('> quoted', 'quoted'),
    ('- one\n- two', 'one\ntwo'),
    ('a\n\nb', 'a\nb'),
    ('<img src="x.png" onerror="alert(1)">pic', 'pic'),
    ('<iframe src="http://example.com"></iframe>after', 'after'),
    # script and style go with their content
    ('<script>alert(1)</script>safe', 'safe'),
    ('before<style>body { display: none }</style>after', 'beforeafter'),
    ('<SCRIPT SRC="http://example.com/x.js"></SCRIPT>ok', 'ok'),
    # text is escaped, attributes are filtered
    ('1 < 2 & 3 > 2', '1 &lt; 2 &amp; 3 &gt; 2'),
    ('<b onclick="alert(1)" style="color: red">x</b>', '<b>x</b>'),
    ('<!-- secret -->visible', 'visible'),
])
def test_render(source, html):
    assert render(source) == html


def test_bare_urls_are_linkified_with_nofollow():
    assert render('see http://example.com/a?b=1&c=2 now') == (
        'see <a href="http://example.com/a?b=1&amp;c=2" rel="nofollow">'
        'http://example.com/a?b=1&amp;c=2</a> now')
    assert render('www.example.com') == (
        '<a href="http://www.example.com" rel="nofollow">www.example.com</a>')
    assert render('https://example.com.') == (
        '<a href="https://example.com" rel="nofollow">https://example.com'
        '</a>.')


def test_links_get_nofollow_whatever_they_say():
    assert render('[x](http://example.com "the title")') == (
        '<a href="http://example.com" title="the title" rel="nofollow">x</a>')
    assert render('<a href="http://example.com" rel="follow" '
                  'target="_blank" onclick="x()">y</a>') == (
        '<a href="http://example.com" rel="nofollow">y</a>')


@pytest.mark.parametrize('source', [
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="ftp://example.com/file">x</a>',
    '<a href="/relative/path">x</a>',
    '<a href="//example.com/protocol-relative">x</a>',
])
def test_only_http_https_mailto_hrefs_survive(source):
    # An anchor whose href the sanitiser drops is its text: no dead link.
    assert render(source) == 'x'
    assert render(f'**{source}** <i>i</i>') == '<strong>x</strong> <i>i</i>'


@pytest.mark.parametrize('source', [
    '[click](javascript:alert(1))', '[x](ftp://example.com/file)',
    '[x](//example.com/x)', '[x](/relative/path)', '[x](data:text/html,x)',
    '<ftp://example.com/file>', '[x]\n\n[x]: ftp://example.com/file',
])
def test_markdown_links_the_sanitiser_drops_are_text(source):
    html = render(source)
    assert '<a' not in html
    assert 'x' in html or 'click' in html


# What the linkifier recognises (linkify-it-py's schemas, and its fuzzy
# links and emails) in a message: a sample of each, and whether the
# sanitiser keeps the link. A schema without a sample fails the test below.
LINKIFIED = {
    'http:': ('http://example.com/a', 'http://example.com/a'),
    'https:': ('https://example.com/a', 'https://example.com/a'),
    'mailto:': ('mailto:susan@example.com', 'mailto:susan@example.com'),
    'ftp:': ('ftp://example.com/file', None),
    '//': ('see //example.com/x', None),
    'fuzzy link': ('www.example.com', 'http://www.example.com'),
    'fuzzy domain': ('example.com/a', 'http://example.com/a'),
    'fuzzy email': ('susan@example.com', 'mailto:susan@example.com'),
}


def test_every_scheme_the_linkifier_knows_has_a_sample():
    schemas = render_module._parser().linkify._schemas
    assert set(schemas) <= set(LINKIFIED)


@pytest.mark.parametrize('schema', sorted(LINKIFIED))
def test_linkified_text_is_a_working_link_or_plain_text(schema):
    text, href = LINKIFIED[schema]
    html = render(f'{text} and more')
    if href is None:
        assert html == f'{text} and more'
    else:
        visible = text.removeprefix('see ')
        assert f'<a href="{href}" rel="nofollow">{visible}</a>' in html


def test_mailto_links_survive():
    assert render('[mail](mailto:susan@example.com)') == (
        '<a href="mailto:susan@example.com" rel="nofollow">mail</a>')


def test_html_is_rendered_when_posting(client, token):
    source = '# hi <script>alert(1)</script>\n\nvisit http://example.com'
    rv = client.post('/api/messages', {'source': source}, token=token())
    assert rv.status == 201
    assert rv.json['html'] == render(source) == (
        'hi \n'
        'visit <a href="http://example.com" rel="nofollow">'
        'http://example.com</a>')


def test_threads_rendering_their_first_messages_at_once(monkeypatch):
    """A worker's threads each render their first message at the same
    moment: every one gets the full html (a shared parser gave some of
    them no rules while another compiled them)."""
    compile_rules = ruler.Ruler.__compile__

    def slow_compile(self):
        # Widens the window in which the cache exists but is still empty.
        self.__cache__ = {}
        time.sleep(0.05)
        compile_rules(self)

    monkeypatch.setattr(ruler.Ruler, '__compile__', slow_compile)
    fresh = importlib.reload(render_module)
    source = '**bold** and http://example.com'
    expected = ('<strong>bold</strong> and <a href="http://example.com" '
                'rel="nofollow">http://example.com</a>')
    start = threading.Barrier(6)
    results = []

    def first_render():
        start.wait()
        try:
            results.append(fresh.render(source))
        except Exception as exc:  # noqa: BLE001 - the failure to report
            results.append(repr(exc))

    threads = [threading.Thread(target=first_render) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [expected] * 6
