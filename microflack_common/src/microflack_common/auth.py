"""Token authentication for every service (Flask-HTTPAuth).

``token_auth`` requires a valid, unrevoked bearer token; ``token_optional_auth``
lets anonymous requests through but still refuses a token that is sent and
not valid. Either way ``current_claims()`` gives the token's claims (or None
for an anonymous request) and ``current_user_id()`` the user's id.

Both answer failures with 401, a JSON body, and
``WWW-Authenticate: Bearer realm="Authentication Required"`` so browsers do
not pop up a login box.
"""
from flask import current_app, g, jsonify, request
from flask_httpauth import HTTPTokenAuth

from .tokens import InvalidToken, decode_token

REALM = 'Authentication Required'


class OptionalTokenAuth(HTTPTokenAuth):
    """Anonymous access allowed; a token, if sent, must be valid."""

    def authenticate(self, auth, stored_password):
        if 'Authorization' not in request.headers:
            return True     # anonymous: current_user() is None
        return super().authenticate(auth, stored_password)


token_auth = HTTPTokenAuth('Bearer', realm=REALM)
token_optional_auth = OptionalTokenAuth('Bearer', realm=REALM)

def verify_token(token):
    """Return the token's claims if it is valid and not revoked, else None."""
    parts = current_app.extensions['microflack']
    try:
        claims = decode_token(token, current_app.config['JWT_SECRET_KEY'])
    except InvalidToken:
        return None
    if parts.revocations is not None \
            and parts.revocations.is_revoked(token, claims):
        return None
    g.jwt_claims = claims
    g.jwt_token = token
    for callback in parts.token_callbacks:
        callback(claims)
    return claims


token_auth.verify_token(verify_token)
token_optional_auth.verify_token(verify_token)


def auth_error(status):
    message = 'authentication required' if status == 401 else 'forbidden'
    response = jsonify(error=message)
    response.status_code = status
    return response


def unauthorized():
    """The platform's 401: JSON, with a Bearer challenge so that browsers
    do not open their own login box (also for Basic-authenticated routes)."""
    response = auth_error(401)
    response.headers['WWW-Authenticate'] = f'Bearer realm="{REALM}"'
    return response


token_auth.error_handler(auth_error)
token_optional_auth.error_handler(auth_error)


def current_claims():
    return g.get('jwt_claims')


def current_user_id():
    claims = current_claims()
    return claims['user_id'] if claims else None


def current_token():
    return g.get('jwt_token')
