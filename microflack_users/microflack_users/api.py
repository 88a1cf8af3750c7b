"""/api/users: register, list, show and edit users; log in (Basic), ping
and sign off (token)."""
import logging
import unicodedata

from flask import Blueprint, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from microflack_common.auth import (
    current_user_id,
    token_auth,
    token_optional_auth,
    unauthorized,
)
from microflack_common.database import retry_on_lost_connection
from microflack_common.etcd_client import EtcdError
from microflack_common.paging import Page, page_request, page_statement, wants_page
from microflack_common.service import shared_parts
from microflack_common.validation import (
    bool_arg,
    json_object,
    storable_id,
    string_field,
)

from .auth import basic_auth
from .models import (
    NICKNAME_KEY_LENGTH,
    NICKNAME_LENGTH,
    PASSWORD_LENGTH,
    User,
    db,
    nickname_key,
)

logger = logging.getLogger(__name__)
users = Blueprint('users', __name__)


def check_characters(name, value, forbidden):
    """400 if ``value`` has characters of the Unicode categories
    ``forbidden``."""
    if any(unicodedata.category(char) in forbidden for char in value):
        abort(400, f'{name} contains characters that are not allowed')


def nickname_field(data, required=True):
    nickname = string_field(data, 'nickname', required=required,
                            max_length=NICKNAME_LENGTH, strip=True)
    if nickname is not None:
        # Control characters (Cc) only confuse readers; format characters
        # (Cf: zero-width spaces, bidirectional overrides, BOMs) make a
        # nickname that looks like another's. Basic auth cannot carry a
        # ':' in a name. (string_field refuses lone surrogates.)
        check_characters('nickname', nickname, ('Cc', 'Cf'))
        if ':' in nickname:
            abort(400, 'nickname must not contain ":"')
        if len(nickname_key(nickname)) > NICKNAME_KEY_LENGTH:
            abort(400, 'nickname is too long once normalised')
    return nickname


def password_field(data, required=True):
    return string_field(data, 'password', required=required,
                        max_length=PASSWORD_LENGTH)


def commit_user_changes():
    """Commit; a nickname that someone else has (perhaps since a moment
    ago: the unique index decides) is the client's mistake, a 400."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        # (The same nickname, or one that looks the same: nickname_key.)
        abort(400, 'nickname is already taken')


def get_user_or_404(user_id):
    user = User.find(user_id)
    if user is None:
        abort(404, 'user not found')
    return user


def token_user():
    """The user the request's token names, for the /me endpoints."""
    user = User.find(current_user_id())
    if user is None:
        abort(unauthorized())    # a valid token for a user that is gone
    return user


def record_token_use(claims):
    """Platform callback for every request with a valid token: the user is
    around. Writes only when the second or the online flag changes."""
    if request.endpoint == 'users.sign_off':
        return  # the view records it in one write, no "online" flash first
    user = User.find(claims['user_id'])
    if user is not None and user.mark_seen():
        db.session.commit()


@users.route('', methods=['POST'])
@retry_on_lost_connection
def new_user():
    data = json_object()
    nickname = nickname_field(data)
    password = password_field(data)
    user = User(nickname=nickname)
    user.set_password(password)
    db.session.add(user)
    commit_user_changes()
    body = user.to_dict()
    return body, 201, {'Location': body['_links']['self']}


@users.route('', methods=['GET'])
@retry_on_lost_connection
@token_optional_auth.login_required
def get_users():
    """Some users by id (``ids``), a page of users when the request asks
    for one (see microflack_common.paging), or, as the original, every
    user (``online=0|1``: those online or not), by update then nickname."""
    online = bool_arg('online')
    query = users_query(online)
    if request.args.get('ids', '') != '':
        return users_by_id(query)
    if wants_page():
        return users_page(query, online)
    query = query.order_by(User.updated_at, User.nickname)
    return {'users': [user.to_dict() for user in db.session.scalars(query)]}


def users_query(online=None):
    """A SELECT of the users; with ``online``, of those online or not."""
    query = select(User)
    if online is not None:
        query = query.where(User.online == online)
    return query


def users_page(query, online):
    """One page of users by id, or of the changes feed."""
    filters = () if online is None else (('online', int(online)),)
    page = page_request(filters)
    query = page_statement(query, User.id, User.updated_at, page.shape)
    page = Page(page, db.session.scalars(query, page.params()),
                key=lambda user: (user.id, user.updated_at))
    return {'users': [user.to_dict() for user in page.items],
            '_meta': page.meta(), '_links': page.links()}


def users_by_id(query):
    """The users of ``ids=3,7,12`` that exist, by id: what a client needs
    to name the authors it shows, in one request."""
    if wants_page():
        abort(400, 'ids cannot be combined with limit, before, after or '
                   'updated_since')
    ids = id_list('ids', current_app.config['MAX_PAGE_SIZE'])
    query = query.where(User.id.in_(ids)).order_by(User.id)
    return {'users': [user.to_dict() for user in db.session.scalars(query)]}


def id_list(name, max_count):
    """A comma-separated list of ids from the query string, without
    duplicates; 400 when it is not one or holds more than ``max_count``."""
    ids = set()
    for part in request.args[name].split(','):
        part = part.strip()
        if not (part.isascii() and part.isdigit() and len(part) <= 16):
            abort(400, f'{name} must be ids separated by commas')
        ids.add(int(part))
    if len(ids) > max_count:
        abort(400, f'{name} may name at most {max_count} users')
    # Ids no column holds are simply not found (and never reach the query).
    return sorted(i for i in ids if storable_id(i))


@users.route('/<int:user_id>', methods=['GET'])
@retry_on_lost_connection
@token_optional_auth.login_required
def get_user(user_id):
    return get_user_or_404(user_id).to_dict()


@users.route('/<int:user_id>', methods=['PUT'])
@retry_on_lost_connection
@token_auth.login_required
def edit_user(user_id):
    user = get_user_or_404(user_id)
    if user.id != current_user_id():
        abort(403, 'you can only edit your own user')
    data = json_object()
    nickname = nickname_field(data, required=False)
    password = password_field(data, required=False)
    if nickname is None and password is None:
        abort(400, 'give a new nickname and/or password')
    if nickname is not None:
        user.nickname = nickname
    if password is not None:
        change_password(user, data, password)
    commit_user_changes()
    if password is not None:
        # Again, now that the old password is gone: a login that slipped
        # in with it since the first revocation is ended too.
        end_sessions(user, required=False)
    return '', 204


def change_password(user, data, password):
    """Set a new password: only with the current one (a stolen token is
    not enough), and every token given out with the old one ends."""
    current = string_field(data, 'current_password', required=False,
                           max_length=PASSWORD_LENGTH)
    if current is None:
        abort(400, 'current_password is required to change the password')
    if not user.check_password(current):
        abort(403, 'current_password is wrong')
    # Before the change: a change whose revocation etcd cannot record is
    # not made (503).
    end_sessions(user)
    user.set_password(password)


def end_sessions(user, required=True):
    """Revoke every token of ``user`` issued until now."""
    revocations = shared_parts().revocations
    if revocations is None:
        return
    try:
        revocations.revoke_user(user.id,
                                current_app.config['TOKEN_EXPIRATION'])
    except EtcdError as exc:
        logger.warning('cannot revoke the tokens of user %d: %s',
                       user.id, exc)
        if required:
            db.session.rollback()
            abort(503, 'the token registry is unavailable, try again')


@users.route('/me', methods=['GET'])
@retry_on_lost_connection
@basic_auth.login_required
def log_in():
    """The tokens service relays logins here: check the credentials, mark
    the user online and answer who it is."""
    user = basic_auth.current_user()
    if user.mark_seen():
        db.session.commit()
    return user.to_dict()


@users.route('/me', methods=['PUT'])
@retry_on_lost_connection
@token_auth.login_required
def ping():
    # record_token_use has marked the user seen and online already; this
    # only makes sure the user exists.
    token_user()
    return '', 204


@users.route('/me', methods=['DELETE'])
@retry_on_lost_connection
@token_auth.login_required
def sign_off():
    user = token_user()
    if user.mark_offline():
        db.session.commit()
    return '', 204
