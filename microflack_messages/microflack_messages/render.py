"""Markdown source → the safe HTML stored with a message.

Rendering is cheap (microseconds for a chat message), so it runs
synchronously when a message is created or edited: the 201 of a POST
already carries the rendered ``html``, and a message is never stored
without it. What may be slow — fetching the links it contains for their
previews — runs in the background (see ``tasks.py``).

The markdown is rendered by markdown-it-py with bare URLs linkified, then
sanitised by nh3: only the tags in ``ALLOWED_TAGS`` survive (others are
stripped, their text kept; ``<script>`` and ``<style>`` lose their content
too), links may only point to http, https or mailto URLs, and every link
gets ``rel="nofollow"``.

A link to anything else is plain text, never an anchor without ``href``
(what nh3 leaves of one whose URL it drops): the parser makes links only
to URLs the sanitiser keeps (bare ``ftp://``, ``//host``, markdown links
and autolinks stay the text they were), and an ``<a>`` written as HTML
that lost its ``href`` is unwrapped to its text.
"""
import logging
import re
import threading

import nh3
from markdown_it import MarkdownIt

# markdown-it logs every rule it tries at DEBUG, which the dev config shows.
logging.getLogger('markdown_it').setLevel(logging.INFO)

ALLOWED_TAGS = {'a', 'abbr', 'acronym', 'b', 'code', 'em', 'i', 'strong'}
ALLOWED_ATTRIBUTES = {'a': {'href', 'title'}, 'abbr': {'title'},
                      'acronym': {'title'}}
ALLOWED_SCHEMES = {'http', 'https', 'mailto'}
# A URL's scheme (RFC 3986 3.1); relative URLs have none.
_SCHEME = re.compile(r'([A-Za-z][A-Za-z0-9+.-]*):')
# An anchor as nh3 writes it: attributes double-quoted, '"' in a value
# escaped, text escaped, no anchor inside another.
_ANCHOR = re.compile(r'<a((?: [a-z]+="[^"]*")*)>(.*?)</a>', re.S)

# A parser per thread: markdown-it compiles its rule chains on first use
# into a cache that is empty while it fills, so a thread rendering at that
# moment through a shared parser gets no rules at all (an empty html, or an
# error).
_parsers = threading.local()
_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS, clean_content_tags={'script', 'style'},
    attributes=ALLOWED_ATTRIBUTES, url_schemes=ALLOWED_SCHEMES,
    url_relative='deny', link_rel='nofollow', strip_comments=True)


def keeps_link(url):
    """Whether the sanitiser keeps a link to this (normalised) URL."""
    scheme = _SCHEME.match(url)
    return bool(scheme) and scheme.group(1).lower() in ALLOWED_SCHEMES


def _parser():
    parser = getattr(_parsers, 'markdown', None)
    if parser is None:
        parser = _parsers.markdown = MarkdownIt(
            'commonmark', {'linkify': True}).enable('linkify')
        # Asked for every link it would make: linkified, markdown, autolink.
        parser.validateLink = keeps_link
    return parser


def _unwrap_dead_anchor(match):
    return match.group(0) if ' href="' in match.group(1) else match.group(2)


def render(source):
    """The sanitised HTML of a markdown source."""
    html = _cleaner.clean(_parser().render(source)).strip()
    return _ANCHOR.sub(_unwrap_dead_anchor, html) if '<a' in html else html
