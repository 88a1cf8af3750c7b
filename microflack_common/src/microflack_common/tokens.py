"""JSON Web Tokens: HS256, claims ``user_id`` and ``exp``.

The algorithm is pinned on both sides: a token is only accepted when it was
signed with HS256 and the platform key, whatever its header claims.
"""
import time

import jwt

ALGORITHM = 'HS256'


class InvalidToken(Exception):
    """The token is malformed, forged, expired or lacks a required claim."""


def generate_token(user_id, secret_key, expires_in=3600):
    payload = {'user_id': user_id, 'exp': int(time.time()) + int(expires_in)}
    return jwt.encode(payload, secret_key, algorithm=ALGORITHM)


def decode_token(token, secret_key):
    """Return the claims of a valid token, or raise InvalidToken."""
    if not isinstance(token, str) or not token:
        raise InvalidToken('no token')
    try:
        claims = jwt.decode(token, secret_key, algorithms=[ALGORITHM],
                            options={'require': ['exp', 'user_id']})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    user_id = claims['user_id']
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise InvalidToken('user_id claim is not an integer')
    return claims
