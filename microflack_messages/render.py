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
"""
import logging
import threading

import nh3
from markdown_it import MarkdownIt

# markdown-it logs every rule it tries at DEBUG, which the dev config shows.
logging.getLogger('markdown_it').setLevel(logging.INFO)

ALLOWED_TAGS = {'a', 'abbr', 'acronym', 'b', 'code', 'em', 'i', 'strong'}
ALLOWED_ATTRIBUTES = {'a': {'href', 'title'}, 'abbr': {'title'},
                      'acronym': {'title'}}
ALLOWED_SCHEMES = {'http', 'https', 'mailto'}

# A parser per thread: markdown-it compiles its rule chains on first use
# into a cache that is empty while it fills, so a thread rendering at that
# moment through a shared parser gets no rules at all (an empty html, or an
# error).
_parsers = threading.local()
_cleaner = nh3.Cleaner(
    tags=ALLOWED_TAGS, clean_content_tags={'script', 'style'},
    attributes=ALLOWED_ATTRIBUTES, url_schemes=ALLOWED_SCHEMES,
    url_relative='deny', link_rel='nofollow', strip_comments=True)


def _parser():
    parser = getattr(_parsers, 'markdown', None)
    if parser is None:
        parser = _parsers.markdown = MarkdownIt(
            'commonmark', {'linkify': True}).enable('linkify')
    return parser


def render(source):
    """The sanitised HTML of a markdown source."""
    return _cleaner.clean(_parser().render(source)).strip()
