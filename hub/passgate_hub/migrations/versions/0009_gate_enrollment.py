"""gate enrollment: a one-time code (its hash, and until when it works) a gate exchanges for its token

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (plain ADD COLUMN and a separate index: SQLite's batch copy of a table others refer to breaks them)
    op.add_column("gates", sa.Column("enroll_hash", sa.String(length=64), nullable=True))
    op.add_column("gates", sa.Column("enroll_expires_at", sa.Double(), nullable=True))
    op.create_index("gates_enroll_hash", "gates", ["enroll_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("gates_enroll_hash", table_name="gates")
    op.drop_column("gates", "enroll_expires_at")
    op.drop_column("gates", "enroll_hash")
