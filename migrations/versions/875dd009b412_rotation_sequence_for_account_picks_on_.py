"""rotation sequence for account picks on PostgreSQL

Revision ID: 875dd009b412
Revises: dd267eae678b
Create Date: 2026-11-26 22:22:44.673805

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '875dd009b412'
down_revision = 'dd267eae678b'
branch_labels = None
depends_on = None


def upgrade():
    # PostgreSQL hands out rotation numbers from a sequence; SQLite takes max + 1 under its
    # write lock instead (see grokproxy/pool.py).
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE IF NOT EXISTS account_pick_seq")
        op.execute(
            "SELECT setval('account_pick_seq', "
            "(SELECT COALESCE(MAX(last_used_seq), 0) + 1 FROM accounts), false)"
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS account_pick_seq")
