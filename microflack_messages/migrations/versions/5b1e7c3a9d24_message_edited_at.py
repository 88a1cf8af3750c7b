"""messages.edited_at: when a message's source was last edited

Revision ID: 5b1e7c3a9d24
Revises: 1e0b84104def
Create Date: 2026-11-26 18:30:00.000000

An "expand" migration, the kind a zero-downtime upgrade needs: release
1.1.0 adds the column while 1.0.0 instances keep serving from the same
table during the roll, and after it if the roll is aborted.

- Old code ignores the column: it names the columns it reads and writes,
  so its inserts leave edited_at NULL and its selects never see it.
- The column is nullable, without a default and without a NOT NULL to
  backfill: adding it changes no existing row, so MariaDB adds it in
  place (instant ADD COLUMN) instead of copying the table, and rows the old
  code inserts stay valid.
- The new code tolerates NULL, which means "never edited" (every message
  posted or only edited by 1.0.0).

Contracting changes (dropping or renaming a column, NOT NULL, a column
the old code would have to fill) belong in a later release, once no
instance of a release that still needs the old shape runs.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b1e7c3a9d24'
down_revision = '1e0b84104def'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('messages',
                  sa.Column('edited_at', sa.BigInteger(), nullable=True))


def downgrade():
    # Only for going back to 1.0.0 for good: the edit times are lost.
    op.drop_column('messages', 'edited_at')
