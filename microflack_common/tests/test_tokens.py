import base64
import json
import time

import jwt
import pytest

from microflack_common import tokens
from microflack_common.tokens import InvalidToken, decode_token, generate_token

KEY = 'a-test-key-that-is-at-least-32-bytes'


def test_round_trip():
    token = generate_token(12, KEY, expires_in=60)
    claims = decode_token(token, KEY)
    assert claims['user_id'] == 12
    assert 55 <= claims['exp'] - time.time() <= 61


def test_default_expiration_is_one_hour():
    claims = decode_token(generate_token(1, KEY), KEY)
    assert 3595 <= claims['exp'] - time.time() <= 3601


def test_header_is_hs256():
    header = jwt.get_unverified_header(generate_token(1, KEY))
    assert header['alg'] == 'HS256'


@pytest.mark.parametrize('token', [
    None, '', 'garbage', 'a.b.c', 'Bearer x',
])
def test_malformed_tokens(token):
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


def test_tokens_of_the_same_second_differ():
    """Two logins of one user in one second: revoking one token must not
    revoke the other."""
    first, second = generate_token(7, KEY), generate_token(7, KEY)
    assert first != second
    assert decode_token(first, KEY)['jti'] != decode_token(second, KEY)['jti']


def flip_spare_bits(segment):
    """Another spelling of the same bytes: the last character of a segment
    whose length leaves spare bits, with those bits set."""
    alphabet = ('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
                '0123456789-_')
    spare = {2: 4, 3: 2}[len(segment) % 4]     # bits beyond the bytes
    value = alphabet.index(segment[-1])
    assert value % (1 << spare) == 0
    return segment[:-1] + alphabet[value + 1]


@pytest.mark.parametrize('respell', [
    lambda t: t + '=',
    lambda t: t + '==',
    lambda t: t.replace('.', '=.', 1),
    lambda t: ' ' + t,
    lambda t: t + '\n',
    lambda t: t.replace('-', '+').replace('_', '/'),
    lambda t: t[:-1] + '\n' + t[-1],
    lambda t: '.'.join(t.split('.')[:2] + [flip_spare_bits(t.split('.')[2])]),
])
def test_only_the_canonical_spelling_is_accepted(respell):
    """A revoked token must not come back with one character added: every
    other spelling of a valid token is refused."""
    token = generate_token(1, KEY)
    # A signature of 32 bytes is 43 characters: 2 spare bits.
    other = respell(token)
    if other == token:      # no - or _ in this token to swap
        other = token + '='
    assert tokens.is_canonical(token) and not tokens.is_canonical(other)
    decode_token(token, KEY)
    with pytest.raises(InvalidToken):
        decode_token(other, KEY)


def test_expired_token():
    with pytest.raises(InvalidToken):
        decode_token(generate_token(1, KEY, expires_in=-1), KEY)


def test_wrong_key():
    token = generate_token(1, 'another-key-that-is-also-32-bytes-long')
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


def unsigned_token(payload, alg='none'):
    def part(obj):
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b'=').decode()
    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(payload)}."


def test_alg_none_rejected():
    token = unsigned_token({'user_id': 1, 'exp': int(time.time()) + 60})
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


def test_other_algorithm_rejected():
    token = jwt.encode({'user_id': 1, 'exp': int(time.time()) + 60},
                       KEY * 2, algorithm='HS512')
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


def test_missing_exp_rejected():
    token = jwt.encode({'user_id': 1}, KEY, algorithm='HS256')
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


@pytest.mark.parametrize('user_id', [None, '1', 1.5, True])
def test_user_id_must_be_integer(user_id):
    payload = {'exp': int(time.time()) + 60}
    if user_id is not None:
        payload['user_id'] = user_id
    token = jwt.encode(payload, KEY, algorithm='HS256')
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


@pytest.mark.parametrize('exp', ['soon', None, True, [1]])
def test_exp_must_be_a_number(exp):
    token = jwt.encode({'user_id': 1, 'exp': exp}, KEY, algorithm='HS256')
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


@pytest.mark.parametrize('user_id', [0, -1, 2 ** 31, 2 ** 63, 10 ** 30])
def test_user_id_must_name_a_storable_row(user_id):
    """Issue 19, finding 4: a validly signed token with a user_id no row
    can have (0, negative, beyond a signed 32-bit INT) is refused (it made
    POST /api/messages answer 500)."""
    token = jwt.encode({'user_id': user_id, 'exp': int(time.time()) + 60},
                       KEY, algorithm='HS256')
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


@pytest.mark.parametrize('exp', [float('nan'), float('inf'), -float('inf'),
                                 1e300])
def test_exp_must_be_a_finite_time(exp):
    """Issue 19, finding 4: NaN or Infinity never expired (and made DELETE
    /api/tokens answer 500); a time past any token's life is refused too."""
    token = jwt.encode({'user_id': 1, 'exp': exp}, KEY, algorithm='HS256')
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


def test_a_token_says_when_it_was_issued_to_the_millisecond():
    before = time.time()
    iat = decode_token(generate_token(1, KEY), KEY)['iat']
    assert before - 0.001 <= iat <= time.time()
    assert round(iat, 3) == iat


@pytest.mark.parametrize('iat', [float('nan'), float('inf'), 'now', True,
                                 None])
def test_iat_must_be_a_time(iat):
    token = jwt.encode({'user_id': 1, 'exp': int(time.time()) + 60,
                        'iat': iat}, KEY, algorithm='HS256')
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


def test_a_token_issued_by_a_clock_a_little_ahead_is_accepted():
    """Another host's clock may be ahead by a second: PyJWT would call
    such a token not yet valid."""
    token = jwt.encode({'user_id': 1, 'exp': int(time.time()) + 60,
                        'iat': time.time() + 2}, KEY, algorithm='HS256')
    assert decode_token(token, KEY)['user_id'] == 1


def test_the_signature_of_a_token_is_checked_once(monkeypatch):
    tokens._verified_claims.cache_clear()
    calls = []
    real_decode = jwt.decode

    def counting_decode(*args, **kwargs):
        calls.append(args[0])
        return real_decode(*args, **kwargs)
    monkeypatch.setattr(tokens.jwt, 'decode', counting_decode)
    token = generate_token(7, KEY, expires_in=60)
    assert [decode_token(token, KEY)['user_id'] for _ in range(3)] == [7] * 3
    assert calls == [token]


def test_a_verified_token_still_expires(monkeypatch):
    token = generate_token(3, KEY, expires_in=2)
    assert decode_token(token, KEY)['user_id'] == 3
    later = time.time() + 3
    monkeypatch.setattr(tokens.time, 'time', lambda: later)
    with pytest.raises(InvalidToken, match='expired'):
        decode_token(token, KEY)


def test_a_verified_token_is_refused_under_another_key():
    token = generate_token(4, KEY, expires_in=60)
    assert decode_token(token, KEY)['user_id'] == 4
    with pytest.raises(InvalidToken):
        decode_token(token, 'another-key-that-is-also-32-bytes-long')


def test_the_claims_given_out_are_a_copy():
    token = generate_token(5, KEY, expires_in=60)
    decode_token(token, KEY)['user_id'] = 99
    assert decode_token(token, KEY)['user_id'] == 5
