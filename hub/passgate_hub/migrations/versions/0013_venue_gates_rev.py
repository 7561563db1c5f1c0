"""venues.gates_rev: bumped whenever a gate of the venue changes what lets it sync

A worker answers a gate's quiet sync rounds from the gate it last read (``rounds``); it trusts that
read only while the venue's ``gates_rev`` (read again every second) is the one it was read with, so
a token rotated, revoked or disabled on any worker or from the CLI is refused within a second.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("venues", sa.Column("gates_rev", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on SQLite too (3.35 and later): a batch would copy the table, and
    # dropping the old one is refused while zones and gates refer to it
    op.drop_column("venues", "gates_rev")
