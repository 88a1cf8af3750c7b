"""Who may post: the user a token names must exist (issue 19, finding 4).

Only the tokens service signs tokens, for users the users service has
just checked, so a validly signed token for a user nobody registered
means the JWT key leaked; even then it must not post. The users service is
asked once per author and process: users are never deleted, so one found
stays known. When it cannot answer, the token is taken at its word (the
platform keeps taking posts while users is down), with a warning.
"""
import logging
import threading

import requests
from flask import abort, current_app

from microflack_common.auth import unauthorized
from microflack_common.service import shared_parts

logger = logging.getLogger(__name__)

KNOWN_AUTHORS = 'microflack_messages.known_authors'
KNOWN_LIMIT = 100000


class KnownAuthors:
    """The ids of users found, for one app (bounded: forgotten all at once
    when full, then asked about again)."""

    def __init__(self):
        self._ids = set()
        self._lock = threading.Lock()

    def __contains__(self, user_id):
        with self._lock:
            return user_id in self._ids

    def add(self, user_id):
        with self._lock:
            if len(self._ids) >= KNOWN_LIMIT:
                self._ids.clear()
            self._ids.add(user_id)


def require_known_author(user_id):
    """Return if the user exists (or users cannot tell); 401 if not."""
    known = current_app.extensions.setdefault(KNOWN_AUTHORS, KnownAuthors())
    if user_id in known:
        return
    try:
        response = shared_parts().http.get(f'/api/users/{user_id}')
    except requests.RequestException as exc:
        logger.warning('cannot ask the users service about user %d (%s): '
                       'taking the token at its word', user_id, exc)
        return
    if response.status_code == 404:
        logger.warning('a validly signed token names user %d, who does not '
                       'exist: refused (has the JWT key leaked?)', user_id)
        abort(unauthorized())
    if response.status_code != 200:
        logger.warning('the users service answered %d about user %d: taking '
                       'the token at its word', response.status_code, user_id)
        return
    known.add(user_id)
