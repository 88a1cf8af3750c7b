"""/api/tokens: log in (through the users service), check, revoke."""
import logging
from contextlib import contextmanager

import requests
from flask import Blueprint, abort, current_app, jsonify, request

from microflack_common.auth import (
    current_claims,
    current_token,
    token_auth,
    unauthorized,
)
from microflack_common.etcd_client import EtcdError
from microflack_common.service import shared_parts
from microflack_common.tokens import generate_token

logger = logging.getLogger(__name__)
tokens = Blueprint('tokens', __name__)


@tokens.route('', methods=['POST'])
def new_token():
    """Relay the client's Basic credentials to GET /api/users/me; a token
    for that user if they are right."""
    auth = request.authorization
    if auth is None or auth.type != 'basic' or not auth.username \
            or not auth.password:
        return unauthorized()
    try:
        # The header is passed on as it came, so any nickname survives.
        response = shared_parts().http.get(
            '/api/users/me',
            headers={'Authorization': request.headers['Authorization']})
    except requests.RequestException as exc:
        logger.warning('users service unreachable: %s', exc)
        abort(503, 'the users service is unavailable, try again')
    if response.status_code == 401:
        return unauthorized()
    if response.status_code != 200:
        logger.warning('users service answered %s', response.status_code)
        abort(503, 'the users service is unavailable, try again')
    try:
        user_id = response.json()['id']
    except (ValueError, KeyError, TypeError):
        abort(502, 'unexpected answer from the users service')
    token = generate_token(user_id, current_app.config['JWT_SECRET_KEY'],
                           current_app.config['TOKEN_EXPIRATION'])
    return jsonify(token=token)


@tokens.route('', methods=['GET'])
@token_auth.login_required
def check_token():
    """200 if the token is valid and not revoked (401 otherwise)."""
    return jsonify(user_id=current_claims()['user_id'],
                   expires_at=current_claims()['exp'])


@tokens.route('', methods=['DELETE'])
@token_auth.login_required
def revoke_token():
    """Log out: this token ends."""
    with registry_required():
        shared_parts().revocations.revoke(current_token(),
                                          current_claims()['exp'])
    return '', 204


@tokens.route('/all', methods=['DELETE'])
@token_auth.login_required
def revoke_all_tokens():
    """Log out everywhere: every token of the user issued until now ends
    (one key in etcd, however many tokens there are)."""
    with registry_required():
        shared_parts().revocations.revoke_user(
            current_claims()['user_id'],
            current_app.config['TOKEN_EXPIRATION'])
    return '', 204


@contextmanager
def registry_required():
    """A revocation etcd cannot record is a 503: the client knows it did
    not happen."""
    try:
        yield
    except EtcdError as exc:
        logger.warning('cannot record a revocation: %s', exc)
        abort(503, 'the token registry is unavailable, try again')

