"""Link expansion in the background, after the response has gone.

Posting or editing a message stores its rendered html at once (see
``render.py``); fetching the pages it links to can take seconds, so that
runs here, on a thread pool, and stores the previews when done (which pushes
the message again).

Lifecycle, explicit:

- ``init_app(app)`` attaches a :class:`BackgroundTasks`; no thread yet.
- The ThreadPoolExecutor is created on the first task, once per process:
  a gunicorn worker forked from a process that had one makes its own.
- Each task runs inside an app context; an exception is logged with its
  traceback.
- ``wait_for_background(timeout)`` waits for every submitted task (tests).
- ``shutdown(timeout)`` stops gracefully: no new tasks, queued ones are
  cancelled, running ones abandon the links they have not fetched yet and
  store what they have; it waits up to ``timeout`` for them. It runs from
  gunicorn's ``worker_exit`` hook (microflack_common.gunicorn_config calls
  the platform's shutdown callbacks): an atexit handler would come too
  late, as the executor's own exit hook first runs the whole queue.
"""
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

from flask import current_app
from sqlalchemy import select

from .links import FetchPolicy, extract_links, link_previews
from .models import Message, db

logger = logging.getLogger(__name__)
EXTENSION = 'messages.background'


class BackgroundTasks:
    def __init__(self, app, workers=4):
        self.app = app
        self.workers = workers
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._executor = None
        self._pid = None
        self._futures = set()

    def submit(self, fn, *args):
        """Run ``fn(*args)`` in the background, in an app context."""
        if self.stopping.is_set():
            logger.warning('shutting down: background task %s not run',
                           fn.__name__)
            return None
        with self._lock:
            if self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(
                    max_workers=self.workers,
                    thread_name_prefix='link-expansion')
                self._futures = set()
                self._pid = os.getpid()
            future = self._executor.submit(self._run, fn, args)
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _run(self, fn, args):
        with self.app.app_context():
            try:
                fn(*args)
            except Exception:
                logger.exception('background task %s%r failed',
                                 fn.__name__, args)

    def _forget(self, future):
        with self._lock:
            self._futures.discard(future)

    def _pending(self):
        with self._lock:
            if self._pid != os.getpid():
                return set()
            return {future for future in self._futures if not future.done()}

    def wait(self, timeout=None):
        """Wait until every submitted task has finished; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending := self._pending():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait_futures(pending, timeout=left)
        return True

    def shutdown(self, timeout=10):
        """Stop taking tasks, cancel queued ones, and wait up to
        ``timeout`` seconds for the running ones; False if some still run."""
        self.stopping.set()
        with self._lock:
            executor = self._executor if self._pid == os.getpid() else None
        if executor is None:
            return True
        executor.shutdown(wait=False, cancel_futures=True)
        finished = self.wait(timeout)
        if not finished:
            logger.warning('link expansions still running after %s s; '
                           'leaving them', timeout)
        return finished


# Within gunicorn's graceful timeout, with room for the rest of the exit.
SHUTDOWN_TIMEOUT = 2


def init_app(app):
    app.extensions[EXTENSION] = BackgroundTasks(
        app, workers=app.config['LINK_EXPANSION_WORKERS'])
    app.extensions['microflack'].on_shutdown(
        lambda: shutdown(timeout=SHUTDOWN_TIMEOUT, app=app))


def background(app=None):
    return (app or current_app).extensions[EXTENSION]


def wait_for_background(timeout=10, app=None):
    return background(app).wait(timeout)


def shutdown(timeout=10, app=None):
    return background(app).shutdown(timeout)


def schedule_link_expansion(message):
    """After a message was stored: expand its links in the background."""
    if extract_links(message.html, 1):
        background().submit(expand_links, message.id, message.source,
                            message.html)


def expand_links(message_id, source, html):
    """The task: fetch the links of ``html`` (the rendering of ``source``)
    and store it with their previews, unless the message was edited
    meanwhile (the edit scheduled its own expansion)."""
    config = current_app.config
    links = extract_links(html, config['LINK_MAX_PER_MESSAGE'])
    previews = link_previews(links, FetchPolicy.from_config(config),
                             stop=background().stopping)
    if not previews:
        return
    # The row stays locked (MySQL) from this check to the commit, so an
    # edit cannot slip in between and be paired with these previews.
    message = db.session.get(Message, message_id, with_for_update=True)
    if message is None or message.source != source:
        logger.info('message %s changed while its links were fetched; '
                    'previews dropped', message_id)
        db.session.rollback()
        return
    message.html = html + previews
    db.session.flush()
    # SQLite ignores FOR UPDATE, but after the flush holds its write lock:
    # reading the source again now settles whether an edit came first.
    current = db.session.scalar(
        select(Message.source).where(Message.id == message_id))
    if current != source:
        db.session.rollback()
        return
    db.session.commit()
