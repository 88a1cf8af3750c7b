"""users.nickname_key: nicknames compared as readers see them

Revision ID: 4a7d2e9c1b53
Revises: 8f3c2a61d7e4
Create Date: 2026-12-07 22:30:00.000000

A nickname's key is its NFKC normalisation, case-folded: "Susan",
"SUSAN" and "ｓｕｓａｎ" (fullwidth) share one, so a second of them is
refused as taken (issue 19, finding 9). The unique index on the key
decides, also between two registrations at the same moment.

An "expand" migration: the column is nullable, and the release before
(which does not know it) inserts rows without a key while both run during
a roll; its nicknames are checked exactly, as before. Existing rows get
their key here; of users whose nicknames already look alike, the oldest
keeps the key and the others none (they keep their nicknames; a rename
gives them one).
"""
import unicodedata

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql


# revision identifiers, used by Alembic.
revision = '4a7d2e9c1b53'
down_revision = '8f3c2a61d7e4'
branch_labels = None
depends_on = None

KEY_LENGTH = 255
NICKNAME_KEY = sa.String(length=KEY_LENGTH).with_variant(
    mysql.VARCHAR(length=KEY_LENGTH, collation='utf8mb4_bin'),
    'mariadb', 'mysql')


def nickname_key(nickname):
    # As microflack_users.models.nickname_key at this revision (a
    # migration keeps its own copy: the model's may change later).
    return unicodedata.normalize('NFKC', nickname).casefold()


def upgrade():
    op.add_column('users', sa.Column('nickname_key', NICKNAME_KEY,
                                     nullable=True))
    users = sa.table('users', sa.column('id', sa.Integer),
                     sa.column('nickname', sa.String),
                     sa.column('nickname_key', sa.String))
    connection = op.get_bind()
    taken, updates = set(), []
    for user_id, nickname in connection.execute(
            sa.select(users.c.id, users.c.nickname).order_by(users.c.id)):
        key = nickname_key(nickname)
        if key in taken or len(key) > KEY_LENGTH:
            continue
        taken.add(key)
        updates.append({'user': user_id, 'key': key})
    # One statement per batch of rows, not per row.
    update = users.update().where(users.c.id == sa.bindparam('user')) \
        .values(nickname_key=sa.bindparam('key'))
    for start in range(0, len(updates), 1000):
        connection.execute(update, updates[start:start + 1000])
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_nickname_key'),
                              ['nickname_key'], unique=True)


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_nickname_key'))
    op.drop_column('users', 'nickname_key')
