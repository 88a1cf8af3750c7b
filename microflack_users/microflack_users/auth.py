"""Basic authentication (nickname and password), used by GET /api/users/me
only: the tokens service relays logins there. Token auth comes from
microflack_common.auth."""
from functools import lru_cache

from flask import request
from flask_httpauth import HTTPBasicAuth
from werkzeug.security import check_password_hash, generate_password_hash

from microflack_common.auth import unauthorized

from .models import User


class StrictBasicAuth(HTTPBasicAuth):
    def get_auth(self):
        # Flask-HTTPAuth decodes credentials whatever the scheme says; a
        # "Bearer <base64 of nick:pass>" header must not log anyone in.
        scheme = request.headers.get('Authorization', '').partition(' ')[0]
        if scheme.lower() != 'basic':
            return None
        return super().get_auth()


basic_auth = StrictBasicAuth()


@lru_cache(maxsize=1)
def dummy_hash():
    """A hash no password matches, made once per process."""
    return generate_password_hash('no user has this password')


@basic_auth.verify_password
def verify_password(nickname, password):
    if not nickname or not password:
        return None
    user = User.find_by_nickname(nickname)
    # A nickname nobody has costs one hash too: how long the answer takes
    # must not tell whether the account exists.
    stored = user.password_hash if user is not None else dummy_hash()
    if not check_password_hash(stored, password) or user is None:
        return None
    return user


@basic_auth.error_handler
def basic_auth_error(status):
    # A Bearer challenge, so that browsers do not open a login box.
    return unauthorized()
