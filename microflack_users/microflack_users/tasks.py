"""The offline sweep: users not seen for a while are marked offline.

Clients ping every 30 s while logged in (SPEC section 5), so a user silent
for USERS_OFFLINE_AFTER (60 s) has gone without signing off. wsgi.py starts
an :class:`OfflineSweep` thread; nothing starts one at import time.
"""
import logging
import threading

from sqlalchemy import select

from microflack_common.config import ConfigError
from microflack_common.utils import timestamp

from .models import User, db

logger = logging.getLogger(__name__)


def sweep_offline_users(offline_after):
    """Mark offline every online user not seen for more than
    ``offline_after`` seconds; returns how many. Goes through the ORM so
    that each change is pushed to the clients."""
    cutoff = timestamp() - offline_after
    stale = db.session.scalars(select(User).where(
        User.online.is_(True), User.last_seen_at < cutoff)).all()
    for user in stale:
        user.online = False
    db.session.commit()
    return len(stale)


class OfflineSweep:
    """Runs :func:`sweep_offline_users` every ``interval`` seconds on a
    background thread, between :meth:`start` and :meth:`stop`."""

    def __init__(self, app, interval=None, offline_after=None):
        self.app = app
        self.interval = interval if interval is not None \
            else app.config['USERS_SWEEP_INTERVAL']
        self.offline_after = offline_after if offline_after is not None \
            else app.config['USERS_OFFLINE_AFTER']
        if self.interval <= 0:
            raise ConfigError('USERS_SWEEP_INTERVAL must be positive, got '
                              f'{self.interval!r}')
        self._stopped = threading.Event()
        self._thread = None

    def run_once(self):
        with self.app.app_context():
            return sweep_offline_users(self.offline_after)

    def start(self):
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='users-offline-sweep')
        self._thread.start()
        return self

    def _run(self):
        while not self._stopped.wait(self.interval):
            try:
                count = self.run_once()
            except Exception:
                # A database hiccup must not end the sweeping for good.
                logger.exception('offline sweep failed; next try in %s s',
                                 self.interval)
            else:
                if count:
                    logger.info('marked %d user(s) offline', count)

    def stop(self, timeout=10):
        """Stop the thread, waiting for a sweep in progress to finish."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()
