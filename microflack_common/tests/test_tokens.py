import base64
import json
import time

import jwt
import pytest

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
