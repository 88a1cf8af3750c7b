"""JSON Web Tokens: HS256, claims ``user_id``, ``exp``, ``iat`` and ``jti``.

``iat`` (when the token was issued, to the millisecond) lets one
revocation end every token a user was given until then (see
:mod:`.revocation`).

Each token carries a random ``jti``, so two logins in the same second get
different tokens and revoking one leaves the other valid. A token must be
in its one canonical form (base64url without padding, no stray bits):
revocations are keyed on the token's text, and any other spelling of the
same token would not be found among them.

The algorithm is pinned on both sides: a token is only accepted when it was
signed with HS256 and the platform key, whatever its header claims.

Every authenticated request decodes its token; a client sends the same one
for an hour. So the signature check of a token is done once and its claims
kept (for the last ``VERIFIED_CACHE_SIZE`` tokens seen); the expiry is
checked on every use.
"""
import base64
import binascii
import math
import secrets
import time
from functools import lru_cache

import jwt

from .validation import storable_id

ALGORITHM = 'HS256'
# No token lives longer than this (TOKEN_EXPIRATION is an hour): an `exp`
# further away is no time the platform gave out.
MAX_LIFETIME = 366 * 24 * 3600


class InvalidToken(Exception):
    """The token is malformed, forged, expired or lacks a required claim."""


def generate_token(user_id, secret_key, expires_in=3600):
    now = time.time()
    payload = {'user_id': user_id, 'exp': int(now) + int(expires_in),
               'iat': math.floor(now * 1000) / 1000, 'jti': secrets.token_urlsafe(12)}
    return jwt.encode(payload, secret_key, algorithm=ALGORITHM)


VERIFIED_CACHE_SIZE = 1024


def decode_token(token, secret_key):
    """Return the claims of a valid token, or raise InvalidToken."""
    if not isinstance(token, str) or not token:
        raise InvalidToken('no token')
    claims = _verified_claims(token, secret_key)
    # As PyJWT: a token is expired from its `exp` second on.
    if claims['exp'] <= time.time():
        raise InvalidToken('Signature has expired')
    return dict(claims)


@lru_cache(maxsize=VERIFIED_CACHE_SIZE)
def _verified_claims(token, secret_key):
    """The claims of a token whose signature and claims are valid, whatever
    its expiry (checked by the caller). Invalid tokens raise and are not
    kept."""
    if not is_canonical(token):
        raise InvalidToken('token is not in canonical form')
    try:
        claims = jwt.decode(token, secret_key, algorithms=[ALGORITHM],
                            options={'require': ['exp', 'user_id'],
                                     'verify_exp': False,
                                     'verify_iat': False})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    user_id, exp = claims['user_id'], claims['exp']
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise InvalidToken('user_id claim is not an integer')
    # An id no row can have (it reached the database as an out-of-range
    # integer).
    if not storable_id(user_id):
        raise InvalidToken('user_id claim names no user')
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise InvalidToken('exp claim is not a number')
    # NaN never compares as expired; Infinity never expires.
    if not math.isfinite(exp) or exp > time.time() + MAX_LIFETIME:
        raise InvalidToken('exp claim is not a time a token can have')
    # Checked here rather than by PyJWT, which refuses a token issued in
    # the next second (another host's clock a little ahead).
    if 'iat' in claims and not _is_time(claims['iat']):
        raise InvalidToken('iat claim is not a time')
    return claims


def _is_time(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def is_canonical(token):
    """Whether the token is three base64url segments exactly as they
    encode: no padding, no whitespace, no bits beyond the bytes."""
    parts = token.split('.')
    if len(parts) != 3:
        return False
    for part in parts:
        try:
            raw = base64.urlsafe_b64decode(part + '=' * (-len(part) % 4))
        except (binascii.Error, ValueError):
            return False
        if base64.urlsafe_b64encode(raw).rstrip(b'=').decode() != part:
            return False
    return True
