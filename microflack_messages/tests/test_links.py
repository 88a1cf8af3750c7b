"""links.py: which addresses may be fetched, and fetching real pages from
servers on 127.0.0.1."""
import ipaddress
import random
import socket
import threading
import time

import pytest
from webserver import (
    WebServer,
    endless,
    html_page,
    page,
    redirect,
    self_signed_certificate,
    unused_port,
)

from microflack_messages import links
from microflack_messages.links import (
    NO_DESCRIPTION,
    USER_AGENT,
    FetchPolicy,
    LinkError,
    extract_links,
    is_public_address,
    link_previews,
    preview_html,
    resolve,
)

OPEN = FetchPolicy(connect_timeout=2, read_timeout=2, allow_private=True)


@pytest.mark.parametrize('address', [
    '127.0.0.1', '127.1.2.3', '169.254.1.1',
    '169.254.169.254', '0.0.0.0', '224.0.0.1', '239.255.255.250',
    '240.0.0.1', '255.255.255.255', '100.64.0.1', '192.0.2.1',
    '198.18.0.1', '::1', '::', 'fe80::1', 'fe80::1%eth0', 'fc00::1',
    'fd12:3456::1', 'ff02::1', '::ffff:127.0.0.1',
    '::ffff:169.254.169.254', '2002:a00:1::1', '2002:7f00:1::1',
    '64:ff9b::a00:1', '2001:db8::1',
])
def test_non_public_addresses(address):
    assert not is_public_address(address)


def test_every_private_ipv4_address_is_refused():
    """Addresses sampled over the whole IPv4 space (the private ranges
    of RFC 1918 among them, about 800 of the sample): every one that
    Python counts as private, in itself or mapped into IPv6, is refused."""
    sample = random.Random(15)
    private = 0
    for _ in range(200_000):
        address = ipaddress.IPv4Address(sample.getrandbits(32))
        if address.is_private:
            private += 1
            assert not is_public_address(str(address)), address
            assert not is_public_address(f'::ffff:{address}'), address
    assert private > 500


@pytest.mark.parametrize('address', [
    '8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700:4700::1111',
    '2a00:1450:4001:81b::200e', '::ffff:8.8.8.8',
])
def test_public_addresses(address):
    assert is_public_address(address)


def test_resolve_refuses_any_private_address(dns):
    # Made-up names (see conftest's network_guard): nothing is sent anywhere.
    dns['mixed.test'] = ['93.184.216.34', '100.64.1.2']
    dns['metadata.test'] = ['169.254.169.254']
    dns['v6.test'] = ['2606:4700:4700::1111', '::1']
    dns['public.test'] = ['93.184.216.34', '2606:4700:4700::1111']
    for name in ('mixed.test', 'metadata.test', 'v6.test'):
        with pytest.raises(LinkError, match='non-public'):
            resolve(name, 80)
    assert resolve('public.test', 80) == ['93.184.216.34',
                                          '2606:4700:4700::1111']
    assert resolve('mixed.test', 80, allow_private=True) == \
        ['93.184.216.34', '100.64.1.2']


def test_resolve_literals_and_unknown_names():
    with pytest.raises(LinkError):
        resolve('127.0.0.1', 80)
    with pytest.raises(LinkError):
        resolve('198.18.1.1', 80)
    assert resolve('127.0.0.1', 80, allow_private=True) == ['127.0.0.1']
    with pytest.raises(LinkError, match='cannot resolve'):
        resolve('no-such-host.test', 80)


def test_private_hosts_are_never_contacted(dns, monkeypatch):
    dns['intranet.test'] = ['100.64.0.7']
    attempts = []
    monkeypatch.setattr(links.urllib3, 'HTTPConnectionPool',
                        lambda *args, **kwargs: attempts.append(args))
    policy = FetchPolicy(allow_private=False)
    for url in ('http://intranet.test/', 'http://100.64.0.7/',
                'http://198.18.1.1:8080/x', 'http://[::1]/',
                'http://169.254.169.254/latest/meta-data/',
                'http://localhost/', 'http://0.0.0.0/'):
        with pytest.raises(LinkError):
            links.fetch(url, policy)
    assert attempts == []


def test_extract_links():
    html = ('<a href="http://a.test/1">1</a> <a href="mailto:x@y.z">m</a> '
            '<a href="ftp://a.test/f">f</a> <a href="http://a.test/1">again'
            '</a> <a>none</a> <a href=" https://b.test/?q=1&amp;r=2 ">2</a> '
            '<a href="javascript:alert(1)">j</a> <a href="HTTP://c.test">3</a>')
    assert extract_links(html, 10) == [
        'http://a.test/1', 'https://b.test/?q=1&r=2', 'HTTP://c.test']
    assert extract_links(html, 2) == ['http://a.test/1',
                                      'https://b.test/?q=1&r=2']
    assert extract_links('no links here', 5) == []


def test_preview_html_escapes_everything():
    assert preview_html('http://a.test/?x="1"&y=<2>', '<script>x</script>',
                        'a "quoted" & <b>bold</b> text') == (
        '<blockquote><p><a href="http://a.test/?x=&quot;1&quot;&amp;y=&lt;2'
        '&gt;">&lt;script&gt;x&lt;/script&gt;</a></p><p>a &quot;quoted&quot;'
        ' &amp; &lt;b&gt;bold&lt;/b&gt; text</p></blockquote>')
    assert preview_html('http://a.test/', '', '') == (
        '<blockquote><p><a href="http://a.test/">http://a.test/</a></p>'
        f'<p>{NO_DESCRIPTION}</p></blockquote>')


def summary(url, policy=OPEN):
    return links.page_summary(links.fetch(url, policy))


def test_title_and_description(web):
    web.routes['/page'] = html_page('  Hello\n  Page ', 'A fine page')
    assert summary(web.url('/page')) == ('Hello Page', 'A fine page')
    assert link_previews([web.url('/page')], OPEN) == (
        f'<blockquote><p><a href="{web.url("/page")}">Hello Page</a></p>'
        '<p>A fine page</p></blockquote>')


def test_missing_title_and_description(web):
    web.routes['/bare'] = html_page()
    web.routes['/empty'] = html_page('   ', '')
    for path in ('/bare', '/empty'):
        url = web.url(path)
        assert link_previews([url], OPEN) == (
            f'<blockquote><p><a href="{url}">{url}</a></p>'
            f'<p>{NO_DESCRIPTION}</p></blockquote>')


def test_hostile_title_and_description_are_escaped(web):
    web.routes['/entities'] = html_page(
        '&lt;script&gt;alert(1)&lt;/script&gt;',
        '&quot;&gt;&lt;img src=x onerror=alert(1)&gt;')
    web.routes['/markup'] = page(
        '<title><b>bold</b><script>alert(2)</script></title>'
        '<meta name="description" content="<i>x</i>">')
    html = link_previews([web.url('/entities'), web.url('/markup')], OPEN)
    assert '<script' not in html and '<img' not in html
    assert '<b>' not in html and '<i>' not in html
    assert '>&lt;script&gt;alert(1)&lt;/script&gt;</a>' in html
    assert '<p>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</p>' in html
    assert ('>&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;alert(2)&lt;/script&gt;'
            '</a>') in html
    assert '<p>&lt;i&gt;x&lt;/i&gt;</p>' in html


def test_first_title_and_description_count(web):
    web.routes['/two'] = page(
        '<meta name="Description" content="first"><title>One</title>'
        '<title>Two</title><meta name="description" content="second">'
        '<svg><title>three</title></svg>')
    assert summary(web.url('/two')) == ('One', 'first')


def test_charset_from_content_type(web):
    web.routes['/latin1'] = page(
        '<title>Café crème</title>'.encode('iso-8859-1'),
        content_type='text/html; charset=ISO-8859-1')
    web.routes['/unknown'] = page('<title>Café</title>'.encode(),
                                  content_type='text/html; charset=klingon')
    assert summary(web.url('/latin1'))[0] == 'Café crème'
    assert summary(web.url('/unknown'))[0] == 'Café'


def test_long_title_is_shortened(web):
    web.routes['/long'] = html_page('t' * 5000, 'd' * 5000)
    title, description = summary(web.url('/long'))
    assert len(title) == links.MAX_TITLE and title.endswith('…')
    assert len(description) == links.MAX_DESCRIPTION


def test_broken_markup_does_not_fail(web):
    web.routes['/broken'] = page('<title>Still here</title><![if ')
    web.routes['/binary'] = page(bytes(range(256)) * 4)
    assert summary(web.url('/broken'))[0] == 'Still here'
    assert summary(web.url('/binary')) == ('', '')


def test_body_is_capped(web):
    policy = FetchPolicy(connect_timeout=2, read_timeout=2, max_bytes=2048,
                         allow_private=True)
    web.routes['/late'] = page('<!--' + 'x' * 5000 + '--><title>Late'
                               '</title>')
    web.routes['/early'] = page('<title>Early</title>' + 'x' * 5000)
    assert summary(web.url('/late'), policy) == ('', '')
    assert summary(web.url('/early'), policy) == ('Early', '')


def test_endless_page_is_cut_at_the_cap(web):
    web.routes['/endless'] = endless('<title>Endless</title>')
    start = time.monotonic()
    assert summary(web.url('/endless'))[0] == 'Endless'
    assert time.monotonic() - start < 2


def test_dripping_page_is_cut_at_the_deadline(web):
    # A byte every 0.1 s never trips the read timeout: the deadline (the
    # two timeouts added up) ends it.
    route = endless('<title>Drip</title>', chunk=b' ', delay=0.1)
    web.routes['/drip'] = route
    policy = FetchPolicy(connect_timeout=0.5, read_timeout=0.5,
                         allow_private=True)
    start = time.monotonic()
    assert summary(web.url('/drip'), policy)[0] == 'Drip'
    assert time.monotonic() - start < 2.5
    route.stop.set()


def test_title_cut_by_the_cap_still_counts(web):
    policy = FetchPolicy(max_bytes=30, allow_private=True)
    web.routes['/cut'] = page('<title>A title that goes on and on</title>')
    assert summary(web.url('/cut'), policy)[0] == 'A title that goes on an'


def test_non_html_is_not_parsed(web):
    web.routes['/data.json'] = page('{"title": "<title>no</title>"}',
                                    content_type='application/json')
    web.routes['/pic.png'] = page(b'\x89PNG<title>no</title>',
                                  content_type='image/png')
    web.routes['/none'] = page('<title>no</title>', content_type='')
    web.routes['/gzip'] = page('<title>no</title>',
                               headers={'Content-Encoding': 'gzip'})
    for path in ('/data.json', '/pic.png', '/none', '/gzip'):
        url = web.url(path)
        assert link_previews([url], OPEN) == (
            f'<blockquote><p><a href="{url}">{url}</a></p>'
            f'<p>{NO_DESCRIPTION}</p></blockquote>'), path


@pytest.mark.parametrize('status', [400, 404, 500, 503])
def test_error_statuses_are_skipped(web, status):
    web.routes['/error'] = page('<title>Error</title>', status=status)
    assert link_previews([web.url('/error')], OPEN) == ''


def test_unreachable_links_are_skipped(web, caplog):
    web.routes['/page'] = html_page('Fine')
    dead = f'http://127.0.0.1:{unused_port()}/page'
    urls = [dead, 'http://no-such-host.test/', 'http://127.0.0.1:99999/',
            'http://[::1/', web.url('/page')]
    with caplog.at_level('INFO', logger='microflack_messages.links'):
        html = link_previews(urls, OPEN)
    assert html == preview_html(web.url('/page'), 'Fine', '')
    assert caplog.text.count('skipped') == 4


def test_slow_server_times_out(web):
    web.routes['/slow'] = lambda handler: web.release.wait(5)
    policy = FetchPolicy(connect_timeout=0.5, read_timeout=0.5,
                         allow_private=True)
    start = time.monotonic()
    assert link_previews([web.url('/slow')], policy) == ''
    assert time.monotonic() - start < 2


def test_redirects_are_followed(web):
    web.routes['/page'] = html_page('Target', 'Redirected here')
    web.routes['/r1'] = redirect('/r2', 301)
    web.routes['/r2'] = redirect(f'http://localhost:{web.port}/r3', 307)
    web.routes['/r3'] = redirect('page', 308)
    url = web.url('/r1')
    assert link_previews([url], OPEN) == preview_html(
        url, 'Target', 'Redirected here')
    assert [path for path, _ in web.requests] == ['/r1', '/r2', '/r3',
                                                 '/page']


def test_at_most_three_redirects(web):
    web.routes['/page'] = html_page('Target')
    for hop in range(4):
        web.routes[f'/r{hop}'] = redirect(f'/r{hop + 1}')
    web.routes['/r4'] = redirect('/page')
    assert link_previews([web.url('/r0')], OPEN) == ''
    assert web.hits('/page') == 0
    assert web.hits('/r3') == 1


def test_redirect_loop_ends(web):
    web.routes['/loop'] = redirect('/loop')
    assert link_previews([web.url('/loop')], OPEN) == ''
    assert web.hits('/loop') == 4


def test_redirect_to_other_schemes_is_refused(web):
    web.routes['/ftp'] = redirect('ftp://127.0.0.1/file')
    web.routes['/file'] = redirect('file:///etc/passwd')
    web.routes['/js'] = redirect('javascript:alert(1)')
    for path in ('/ftp', '/file', '/js'):
        assert link_previews([web.url(path)], OPEN) == '', path


def test_every_redirect_hop_is_checked(web, dns, monkeypatch):
    """The test server stands for a public site; it redirects to a name
    that resolves to a private address, which must not be contacted."""
    def public_for_this_test(address):
        return address == '127.0.0.1' or real_check(address)
    real_check = links.is_public_address
    monkeypatch.setattr(links, 'is_public_address', public_for_this_test)
    dns['intranet.test'] = ['93.184.216.34', '100.64.0.1']
    web.routes['/page'] = html_page('Public')
    web.routes['/inside'] = redirect('http://intranet.test/admin')
    web.routes['/outside'] = redirect('/page')
    strict = FetchPolicy(connect_timeout=2, read_timeout=2)
    assert link_previews([web.url('/inside')], strict) == ''
    assert link_previews([web.url('/outside')], strict) == preview_html(
        web.url('/outside'), 'Public', '')


def test_request_carries_no_credentials(web):
    web.routes['/page'] = html_page('Page')
    url = f'http://user:secret@127.0.0.1:{web.port}/page?q=a%20b#frag'
    assert 'Page' in link_previews([url], OPEN)
    [(path, headers)] = web.requests
    assert path == '/page?q=a%20b'
    lowered = {name.lower(): value for name, value in headers.items()}
    assert lowered['user-agent'] == USER_AGENT
    assert lowered['host'] == f'127.0.0.1:{web.port}'
    assert lowered['accept-encoding'] == 'identity'
    assert 'authorization' not in lowered and 'cookie' not in lowered


def test_host_with_several_addresses(web):
    # localhost may resolve to ::1 first, where nothing listens: the next
    # address is tried.
    web.routes['/page'] = html_page('Local')
    url = f'http://localhost:{web.port}/page'
    assert link_previews([url], OPEN) == preview_html(url, 'Local', '')


@pytest.fixture
def tls_web(tmp_path):
    """An HTTPS server whose certificate names localhost and 127.0.0.1."""
    server = WebServer(tls=self_signed_certificate(
        tmp_path, ['DNS:localhost', 'IP:127.0.0.1']))
    server.certfile = str(tmp_path / 'cert.pem')
    yield server
    server.close()


def test_https_with_a_trusted_certificate(tls_web, monkeypatch):
    # The connection goes to the checked address; the certificate is
    # still verified against the name in the link.
    monkeypatch.setenv('SSL_CERT_FILE', tls_web.certfile)
    tls_web.routes['/page'] = html_page('Secure', 'Over TLS')
    for host in ('localhost', '127.0.0.1'):
        url = tls_web.url('/page', host=host)
        assert link_previews([url], OPEN) == preview_html(
            url, 'Secure', 'Over TLS'), host
    assert [headers['Host'] for _, headers in tls_web.requests] == [
        f'localhost:{tls_web.port}', f'127.0.0.1:{tls_web.port}']


def test_https_with_an_untrusted_certificate(tls_web):
    tls_web.routes['/page'] = html_page('Secure')
    assert link_previews([tls_web.url('/page')], OPEN) == ''
    assert tls_web.requests == []


def test_https_certificate_for_another_name(tmp_path, monkeypatch):
    server = WebServer(tls=self_signed_certificate(tmp_path,
                                                   ['DNS:other.test']))
    try:
        monkeypatch.setenv('SSL_CERT_FILE', str(tmp_path / 'cert.pem'))
        server.routes['/page'] = html_page('Impostor')
        assert link_previews([server.url('/page', host='localhost')],
                             OPEN) == ''
        assert server.requests == []
    finally:
        server.close()


def test_stop_abandons_remaining_links(web):
    web.routes['/page'] = html_page('Page')
    stop = threading.Event()
    stop.set()
    assert link_previews([web.url('/page')], OPEN, stop=stop) == ''
    assert web.requests == []


def test_loopback_refused_by_default(web):
    web.routes['/page'] = html_page('Page')
    assert link_previews([web.url('/page')], FetchPolicy()) == ''
    assert web.requests == []


def test_fetch_errors_cover_socket_errors():
    assert issubclass(socket.timeout, links.FETCH_ERRORS)
    assert issubclass(ConnectionRefusedError, links.FETCH_ERRORS)
