"""/api/messages: post, list, read and edit chat messages."""
import json

from flask import Blueprint, abort, current_app, jsonify
from sqlalchemy import bindparam, select

from microflack_common.auth import current_user_id, token_auth, token_optional_auth
from microflack_common.database import PreparedRead, retry_on_lost_connection
from microflack_common.paging import Page, page_request, page_statements, wants_page
from microflack_common.utils import timestamp
from microflack_common.validation import (
    int_arg,
    json_object,
    storable_id,
    string_field,
)

from .authors import require_known_author
from .models import Message, db, message_json
from .render import render
from .tasks import schedule_link_expansion

messages = Blueprint('messages', __name__)

# GET /api/messages never returns messages older than this (seconds).
HISTORY = 24 * 60 * 60

_table = Message.__table__
# Each row is one message's JSON, written by the database (message_json).
MESSAGES_SINCE = PreparedRead(
    select(message_json(_table))
    .where(_table.c.updated_at >= bindparam('since'))
    .order_by(_table.c.updated_at, _table.c.id))
# Pages (microflack_common.paging): each row is the JSON, the id and the
# updated_at that the page's links need.
PAGES = {shape: PreparedRead(statement) for shape, statement in page_statements(
    select(message_json(_table), _table.c.id, _table.c.updated_at),
    _table.c.id, _table.c.updated_at).items()}


def source_from_request():
    """The ``source`` of the JSON body, checked (400 otherwise)."""
    source = string_field(json_object(), 'source',
                          max_length=current_app.config['MAX_MESSAGE_LENGTH'])
    # Blank sources are refused, but a source is stored as it was written.
    if not source.strip():
        abort(400, 'source must not be empty')
    return source


def get_message_or_404(message_id):
    message = db.session.get(Message, message_id) \
        if storable_id(message_id) else None
    if message is None:
        abort(404)
    return message


@messages.route('', methods=['POST'])
@retry_on_lost_connection
@token_auth.login_required
def new_message():
    """Post a message: stored rendered, its links expanded afterwards."""
    source = source_from_request()
    require_known_author(current_user_id())
    message = Message(source=source, html=render(source),
                      user_id=current_user_id())
    db.session.add(message)
    db.session.commit()
    schedule_link_expansion(message)
    body = message.to_dict()
    response = jsonify(body)
    response.status_code = 201
    response.headers['Location'] = body['_links']['self']
    return response


@messages.route('', methods=['GET'])
@retry_on_lost_connection
@token_optional_auth.login_required
def get_messages():
    """A page of messages when the request asks for one (see
    microflack_common.paging); otherwise, as the original: every message
    updated in the last day, oldest update first."""
    if wants_page():
        return messages_page()
    since = timestamp() - HISTORY
    updated_since = int_arg('updated_since')
    if updated_since is not None:
        since = max(since, updated_since)
    # Not the session: a read needs no unit of work, and the session would
    # roll back its transaction afterwards, a database round trip for
    # nothing (see microflack_common.database).
    items = MESSAGES_SINCE.scalars(since=since)
    # The messages are JSON already: only the envelope is written here
    # (with jsonify's trailing newline).
    return current_app.response_class(
        '{"messages":[' + ','.join(items) + ']}\n',
        mimetype=current_app.json.mimetype)


def messages_page():
    """One page: of ids (no time limit, the whole history is there) or of
    the changes feed (from a day ago at most, as the whole list)."""
    page = page_request(since_floor=timestamp() - HISTORY)
    rows = PAGES[page.shape].rows(**page.params())
    page = Page(page, rows, key=lambda row: (row[1], row[2]))
    # As the whole list: the messages are JSON already.
    return current_app.response_class(
        '{"messages":[' + ','.join(row[0] for row in page.items)
        + '],"_meta":' + json.dumps(page.meta(), separators=(',', ':'))
        + ',"_links":' + json.dumps(page.links(), separators=(',', ':')) + '}\n',
        mimetype=current_app.json.mimetype)


@messages.route('/<int:message_id>', methods=['GET'])
@retry_on_lost_connection
@token_optional_auth.login_required
def get_message(message_id):
    return jsonify(get_message_or_404(message_id).to_dict())


@messages.route('/<int:message_id>', methods=['PUT'])
@retry_on_lost_connection
@token_auth.login_required
def edit_message(message_id):
    """Replace the source of one's own message; it is rendered again and
    its links expanded again, and ``edited_at`` tells when."""
    message = get_message_or_404(message_id)
    if message.user_id != current_user_id():
        abort(403, 'you can only edit your own messages')
    source = source_from_request()
    message.source = source
    message.html = render(source)
    # One clock reading for both, so that an edit shows as edited_at ==
    # updated_at (until the link expansion updates the message again).
    message.edited_at = message.updated_at = timestamp()
    db.session.commit()
    schedule_link_expansion(message)
    return '', 204
