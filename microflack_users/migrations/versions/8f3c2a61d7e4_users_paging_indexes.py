"""users: indexes on updated_at and online, for paged lists

Revision ID: 8f3c2a61d7e4
Revises: cd9adc403901
Create Date: 2026-12-02 10:00:00.000000

The changes feed (?updated_since) reads users in order of
(updated_at, id), and the online list (?online=1 with a page) reads the
online users in order of id: each index's entries end with the primary
key, so either walk stops after one page instead of reading every user
ever registered.

An "expand" migration: indexes change no row and no query of the older
release, which runs beside this one during a roll; MariaDB builds them
in place, without blocking writes.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '8f3c2a61d7e4'
down_revision = 'cd9adc403901'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_updated_at'),
                              ['updated_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_users_online'), ['online'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_online'))
        batch_op.drop_index(batch_op.f('ix_users_updated_at'))
