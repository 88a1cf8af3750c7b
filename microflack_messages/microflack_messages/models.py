"""The messages table and its JSON form."""
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, Integer, String, Text, cast, func, literal_column
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from microflack_common.events import track_model_changes
from microflack_common.utils import timestamp

db = SQLAlchemy()

# MySQL's TEXT holds 64 KiB; rendered html with link previews can exceed it.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), 'mysql')


class Message(db.Model):
    __tablename__ = 'messages'

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=timestamp)
    updated_at: Mapped[int] = mapped_column(
        BigInteger, default=timestamp, onupdate=timestamp, index=True)
    source: Mapped[str] = mapped_column(LongText)
    html: Mapped[str] = mapped_column(LongText)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    # Since 1.1.0: when the source was last edited (PUT), NULL if never.
    # Nullable because 1.0.0 instances, which may run beside this code,
    # insert rows without it (see migration 5b1e7c3a9d24).
    edited_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    def __init__(self, **columns):
        # One clock reading for both: a new message was created when it
        # was last updated (two column defaults could straddle a second).
        now = timestamp()
        columns.setdefault('created_at', now)
        columns.setdefault('updated_at', now)
        super().__init__(**columns)

    def to_dict(self):
        return message_dict(self)


def message_dict(message):
    """The JSON form of a message: a Message, or a row of the messages
    table (the list endpoint reads rows, skipping the ORM's bookkeeping)."""
    return {
        'id': message.id,
        'created_at': message.created_at,
        'updated_at': message.updated_at,
        'source': message.source,
        'html': message.html,
        'user_id': message.user_id,
        'edited_at': message.edited_at,
        '_links': {
            'self': f'/api/messages/{message.id}',
            'user': f'/api/users/{message.user_id}',
        },
    }


# Every committed insert or update (post, link expansion, edit) is pushed to
# the browsers as an ``updated_model`` event.
track_model_changes(db.session, {Message: 'Message'})


def message_json(table):
    """The same JSON as ``message_dict`` gives, as an SQL expression: the
    database writes each message's JSON itself, so that the list, the hot
    path, reads one string per message instead of seven columns that
    Python would turn into dicts and encode. Written with concatenation and
    JSON_QUOTE (MariaDB and SQLite alike), which costs MariaDB less than
    JSON_OBJECT. A test holds the two forms equal."""
    def text(value):
        # Inlined rather than bound: PyMySQL would escape a dozen
        # parameters into every query.
        return literal_column(f"'{value}'", String)

    def number(column):
        return cast(column, String)

    c = table.c
    return (text('{"id":') + number(c.id)
            + text(',"created_at":') + number(c.created_at)
            + text(',"updated_at":') + number(c.updated_at)
            + text(',"source":') + func.json_quote(c.source, type_=String)
            + text(',"html":') + func.json_quote(c.html, type_=String)
            + text(',"user_id":') + number(c.user_id)
            + text(',"edited_at":')
            + func.coalesce(number(c.edited_at), text('null'))
            + text(',"_links":{"self":"/api/messages/') + number(c.id)
            + text('","user":"/api/users/') + number(c.user_id)
            + text('"}}'))
