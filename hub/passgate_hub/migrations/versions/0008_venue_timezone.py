"""venue timezone: the console shows a venue's times, and counts its days, in its own time zone

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (plain ADD COLUMN: SQLite's batch copy of a table other tables refer to breaks their keys)
    op.add_column("venues", sa.Column("timezone", sa.String(length=64), nullable=False,
                                      server_default=sa.text("'UTC'")))


def downgrade() -> None:
    op.drop_column("venues", "timezone")
