"""Basic authentication (nickname and password), used by GET /api/users/me
only: the tokens service relays logins there. Token auth comes from
microflack_common.auth."""
from flask import request
from flask_httpauth import HTTPBasicAuth

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


@basic_auth.verify_password
def verify_password(nickname, password):
    if not nickname or not password:
        return None
    user = User.find_by_nickname(nickname)
    if user is None or not user.check_password(password):
        return None
    return user


@basic_auth.error_handler
def basic_auth_error(status):
    # A Bearer challenge, so that browsers do not open a login box.
    return unauthorized()
