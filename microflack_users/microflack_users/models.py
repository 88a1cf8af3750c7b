"""The users service's data: one table of users."""
import unicodedata

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import select
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import validates
from werkzeug.security import check_password_hash, generate_password_hash

from microflack_common.events import track_model_changes
from microflack_common.utils import timestamp
from microflack_common.validation import storable_id

db = SQLAlchemy()

NICKNAME_LENGTH = 32
# A password is hashed on every login: a new one is at most this long.
PASSWORD_LENGTH = 1024
# Nicknames compare exactly, as in SQLite: MySQL's default collations would
# take "susan", "Susan" and "süsan" (or any two emoji) for the same name.
NICKNAME_TYPE = db.String(NICKNAME_LENGTH).with_variant(
    mysql.VARCHAR(NICKNAME_LENGTH, collation='utf8mb4_bin'),
    'mysql', 'mariadb')

# A nickname's key: what readers cannot tell apart shares one (NFKC folds
# fullwidth and compatibility forms, casefold the case), and a nickname
# whose key another user has is taken. Keys may be longer than nicknames.
NICKNAME_KEY_LENGTH = 255
NICKNAME_KEY_TYPE = db.String(NICKNAME_KEY_LENGTH).with_variant(
    mysql.VARCHAR(NICKNAME_KEY_LENGTH, collation='utf8mb4_bin'),
    'mysql', 'mariadb')


def nickname_key(nickname):
    return unicodedata.normalize('NFKC', nickname).casefold()


class User(db.Model):
    __tablename__ = 'users'
    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(db.Integer, nullable=False, default=timestamp)
    # Indexed for the paged lists (changes feed, online users).
    updated_at = db.Column(db.Integer, nullable=False, default=timestamp,
                           onupdate=timestamp, index=True)
    nickname = db.Column(NICKNAME_TYPE, nullable=False, unique=True,
                         index=True)
    # Null for users of the release before it (issue 19, finding 9).
    nickname_key = db.Column(NICKNAME_KEY_TYPE, nullable=True, unique=True,
                             index=True)
    password_hash = db.Column(db.String(256), nullable=False)
    last_seen_at = db.Column(db.Integer, nullable=False, default=timestamp)
    online = db.Column(db.Boolean, nullable=False, default=False, index=True)

    def __init__(self, **columns):
        # One clock reading for the three times of a new user (column
        # defaults, one call each, could straddle a second).
        now = timestamp()
        for name in ('created_at', 'updated_at', 'last_seen_at'):
            columns.setdefault(name, now)
        super().__init__(**columns)

    @validates('nickname')
    def _keep_key(self, _, nickname):
        """Every nickname set, however, sets its key."""
        self.nickname_key = nickname_key(nickname)
        return nickname

    @staticmethod
    def find(user_id):
        """The user with this id, or None; ids no database column holds
        (a forged huge token claim, say) are simply not found."""
        if not storable_id(user_id):
            return None
        return db.session.get(User, user_id)

    @staticmethod
    def find_by_nickname(nickname):
        user = db.session.scalar(select(User).filter_by(nickname=nickname))
        # MySQL ignores trailing spaces when comparing: "susan " is not susan.
        return user if user is not None and user.nickname == nickname \
            else None

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    def mark_seen(self):
        """Record that the user is around; True if that changed anything
        (callers only write to the database then)."""
        now = timestamp()
        if self.last_seen_at == now and self.online:
            return False
        self.last_seen_at = now
        self.online = True
        return True

    def mark_offline(self):
        """Record that the user left; True if that changed anything."""
        now = timestamp()
        if self.last_seen_at == now and not self.online:
            return False
        self.last_seen_at = now
        self.online = False
        return True

    def to_dict(self):
        # Plain strings, not url_for(): pushes are built after commits, also
        # on the sweep's thread where there is no request.
        return {
            'id': self.id,
            'created_at': self.created_at,
            'updated_at': self.updated_at,
            'nickname': self.nickname,
            'last_seen_at': self.last_seen_at,
            'online': self.online,
            '_links': {
                'self': f'/api/users/{self.id}',
                'messages': f'/api/messages/{self.id}',
                'tokens': '/api/tokens',
            },
        }


# Every committed insert or update of a user is pushed as `updated_model`.
track_model_changes(db.session, {User: 'User'})
