"""Link previews: fetch the pages a message links to, safely.

For each http(s) link in a message's html a preview is appended::

    <blockquote><p><a href="URL">TITLE</a></p><p>DESCRIPTION</p></blockquote>

TITLE comes from the page's ``<title>`` (else the URL), DESCRIPTION from its
``<meta name="description">`` (else ``No description found.``); everything
inserted is HTML-escaped. A link that cannot be fetched is skipped.

The pages are chosen by users, so fetching them is guarded:

- only http and https; redirects are followed by hand, at most 3;
- every address the host name resolves to (at every redirect hop) must be
  public: private, loopback, link-local, multicast, reserved and unspecified
  addresses are refused unless ``ALLOW_PRIVATE_LINKS``; the connection then
  goes to the very address that was checked, so a second DNS answer cannot
  point it elsewhere;
- connect and read timeouts, and a deadline for the whole link (both
  timeouts added up) so that a server sending one byte at a time is cut off;
- at most ``LINK_MAX_BYTES`` of the body are read, and only ``text/html``
  bodies are parsed (with the standard library's html.parser);
- no cookies, no credentials (not even those written in the URL), no
  compression, a short User-Agent.
"""
import codecs
import html
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import quote, urljoin, urlsplit

import urllib3

logger = logging.getLogger(__name__)

USER_AGENT = 'MicroFlack-LinkPreview/1.0'
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset([301, 302, 303, 307, 308])
NO_DESCRIPTION = 'No description found.'
MAX_TITLE = 300             # characters kept of a page's title
MAX_DESCRIPTION = 1000      # and of its description
CHUNK_SIZE = 16 * 1024


class LinkError(Exception):
    """The link cannot, or must not, be fetched."""


# What fetching one link may raise; the link is then skipped.
FETCH_ERRORS = (LinkError, urllib3.exceptions.HTTPError, OSError,
                ValueError, UnicodeError)


@dataclass(frozen=True)
class FetchPolicy:
    connect_timeout: float = 3
    read_timeout: float = 5
    max_bytes: int = 512 * 1024
    allow_private: bool = False
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_config(cls, config):
        return cls(connect_timeout=config['LINK_CONNECT_TIMEOUT'],
                   read_timeout=config['LINK_READ_TIMEOUT'],
                   max_bytes=config['LINK_MAX_BYTES'],
                   allow_private=config['ALLOW_PRIVATE_LINKS'])


# --- where a link may lead ---------------------------------------------------

def is_public_address(address):
    """True unless the IP address is private, loopback, link-local,
    multicast, reserved, unspecified or otherwise not globally routable
    (IPv4 addresses embedded in IPv6 ones are judged as IPv4)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            ip = embedded
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local
        or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def resolve(host, port, allow_private=False):
    """Every address ``host`` resolves to, in order; LinkError if there is
    none or (unless ``allow_private``) if any of them is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise LinkError(f'cannot resolve {host}: {exc}') from None
    addresses = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = sockaddr[0]
        if not allow_private and not is_public_address(address):
            raise LinkError(f'{host} resolves to the non-public address '
                            f'{address}')
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise LinkError(f'{host} has no IP address')
    return addresses


# --- fetching ------------------------------------------------------------------

@dataclass
class Page:
    """What one request brought back."""
    status: int
    location: str | None = None     # a redirect's target
    body: bytes | None = None       # an HTML page's first bytes
    charset: str | None = None


def _request_target(parts):
    path = quote(parts.path or '/', safe="/%:@!$&'()*+,;=~")
    if parts.query:
        path += '?' + quote(parts.query, safe="/?%:@!$&'()*+,;=~")
    return path


def _content_type(value):
    """``text/html; charset=utf-8`` → ``('text/html', 'utf-8')``."""
    mime, *params = (value or '').split(';')
    charset = None
    for param in params:
        name, _, param_value = param.partition('=')
        if name.strip().lower() == 'charset':
            charset = param_value.strip().strip('"\'') or None
    return mime.strip().lower(), charset


def _remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise LinkError('took too long')
    return left


def _open(url, policy, deadline):
    """Send a GET for ``url`` to one of its checked addresses; returns the
    pool and the unread response."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ('http', 'https') or not parts.hostname:
        raise LinkError('not an http(s) URL')
    host = parts.hostname.encode('idna').decode('ascii')
    port = parts.port or (443 if scheme == 'https' else 80)
    host_header = f'[{host}]' if ':' in host else host
    if parts.port:
        host_header += f':{parts.port}'
    headers = {'Host': host_header, 'User-Agent': USER_AGENT,
               'Accept': 'text/html,*/*;q=0.5',
               'Accept-Encoding': 'identity'}
    last_error = None
    for address in resolve(host, port, policy.allow_private):
        left = _remaining(deadline)
        timeout = urllib3.Timeout(connect=min(policy.connect_timeout, left),
                                  read=min(policy.read_timeout, left))
        if scheme == 'https':
            pool = urllib3.HTTPSConnectionPool(
                address, port, maxsize=1, retries=False, timeout=timeout,
                server_hostname=host, assert_hostname=host,
                cert_reqs='CERT_REQUIRED')
        else:
            pool = urllib3.HTTPConnectionPool(
                address, port, maxsize=1, retries=False, timeout=timeout)
        try:
            response = pool.urlopen(
                'GET', _request_target(parts), headers=headers,
                redirect=False, retries=False, preload_content=False,
                assert_same_host=False)
        except (urllib3.exceptions.NewConnectionError,
                urllib3.exceptions.ConnectTimeoutError) as exc:
            pool.close()
            last_error = exc
            continue            # try the host's next address
        except Exception:
            pool.close()
            raise
        return pool, response
    raise LinkError(f'cannot connect to {host}: {last_error}')


def _read(response, max_bytes, deadline):
    """Up to ``max_bytes`` of the body, or what came before the deadline."""
    chunks, size = [], 0
    while size < max_bytes and time.monotonic() < deadline:
        chunk = response.read1(min(CHUNK_SIZE, max_bytes - size),
                               decode_content=False)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b''.join(chunks)


def fetch_page(url, policy, deadline):
    """One request (no redirect followed): a :class:`Page`."""
    pool, response = _open(url, policy, deadline)
    try:
        if response.status in REDIRECT_STATUSES \
                and response.headers.get('Location'):
            return Page(response.status, location=response.headers['Location'])
        if not 200 <= response.status < 300:
            raise LinkError(f'answered {response.status}')
        mime, charset = _content_type(response.headers.get('Content-Type'))
        encoding = response.headers.get('Content-Encoding', 'identity')
        if mime != 'text/html' or encoding.strip().lower() != 'identity':
            return Page(response.status)    # not parsed, not even read
        body = _read(response, policy.max_bytes, deadline)
        return Page(response.status, body=body, charset=charset)
    finally:
        response.close()
        pool.close()


def fetch(url, policy):
    """The final :class:`Page` of ``url``, following up to
    ``policy.max_redirects`` redirects, each checked like the first."""
    deadline = time.monotonic() + policy.connect_timeout + policy.read_timeout
    for _ in range(policy.max_redirects + 1):
        page = fetch_page(url, policy, deadline)
        if page.location is None:
            return page
        url = urljoin(url, page.location.strip())
    raise LinkError(f'more than {policy.max_redirects} redirects')


# --- reading a page ----------------------------------------------------------

class HeadParser(HTMLParser):
    """Collects the first ``<title>`` (its markup kept as text, as browsers
    do) and the first ``<meta name="description">``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = None
        self.description = None
        self._title_parts = None

    def handle_starttag(self, tag, attrs):
        if self._title_parts is not None:
            self._title_parts.append(self.get_starttag_text())
        elif tag == 'title' and self.title is None:
            self._title_parts = []
        elif tag == 'meta' and self.description is None:
            attrs = dict(attrs)
            if (attrs.get('name') or '').strip().lower() == 'description':
                self.description = attrs.get('content') or ''

    def handle_endtag(self, tag):
        if self._title_parts is None:
            return
        if tag == 'title':
            self.title = ''.join(self._title_parts)
            self._title_parts = None
        else:
            self._title_parts.append(f'</{tag}>')

    def handle_data(self, data):
        if self._title_parts is not None:
            self._title_parts.append(data)

    def finish(self):
        """Parse what is buffered; a title cut off by the byte cap counts."""
        try:
            self.close()
        except AssertionError:      # html.parser gives up on some markup
            pass
        if self._title_parts is not None:
            self.title = ''.join(self._title_parts)


def _decode(body, charset):
    try:
        codecs.lookup(charset or 'utf-8')
    except LookupError:
        charset = None
    return body.decode(charset or 'utf-8', errors='replace')


def _clean(text, limit):
    text = ' '.join((text or '').split())
    return text[:limit - 1] + '…' if len(text) > limit else text


def page_summary(page):
    """``(title, description)`` of a fetched page, each possibly empty."""
    if page.body is None:
        return '', ''
    parser = HeadParser()
    try:
        parser.feed(_decode(page.body, page.charset))
    except AssertionError:          # html.parser gives up on some markup
        pass
    parser.finish()
    return (_clean(parser.title, MAX_TITLE),
            _clean(parser.description, MAX_DESCRIPTION))


def preview_html(url, title, description):
    """The blockquote appended for one link, every part escaped."""
    href = html.escape(url)
    title = html.escape(title or url)
    description = html.escape(description or NO_DESCRIPTION)
    return (f'<blockquote><p><a href="{href}">{title}</a></p>'
            f'<p>{description}</p></blockquote>')


# --- a message's links -------------------------------------------------------

class _LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == 'a':
            href = dict(attrs).get('href')
            if href:
                self.hrefs.append(href.strip())


def extract_links(message_html, limit):
    """The first ``limit`` distinct http(s) links of a message's html."""
    collector = _LinkCollector()
    collector.feed(message_html)
    collector.close()
    links = []
    for href in collector.hrefs:
        if len(links) >= limit:
            break
        if urlsplit(href).scheme.lower() in ('http', 'https') \
                and href not in links:
            links.append(href)
    return links


def link_previews(urls, policy, stop=None):
    """The preview HTML of every link that could be fetched, in order.
    ``stop`` (a threading.Event) abandons the remaining links when set."""
    previews = []
    for url in urls:
        if stop is not None and stop.is_set():
            logger.info('link previews abandoned: shutting down')
            break
        try:
            title, description = page_summary(fetch(url, policy))
        except FETCH_ERRORS as exc:
            logger.info('link %s skipped: %s', url, exc)
            continue
        previews.append(preview_html(url, title, description))
    return ''.join(previews)
