"""retention: per-venue retention settings, passage counts that outlive events, purge indexes

Revision ID: 0005
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing venues get the documented defaults (30 days of events, pass ids for 48 hours).
    # (plain ADD COLUMN: SQLite's batch copy of a table other tables refer to breaks their keys)
    for column, default in (("retention_days", "30"), ("window_hours", "48")):
        op.add_column("venues", sa.Column(column, sa.Integer(), nullable=False,
                                          server_default=sa.text(default)))
    op.create_table(
        "passage_counts",
        sa.Column("venue_id", sa.Integer(), sa.ForeignKey("venues.id"), nullable=False),
        sa.Column("gate_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("passages", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("venue_id", "gate_id", "day", "direction"),
    )
    has_pass = sa.text("pass_id IS NOT NULL")
    op.create_index("events_venue_received", "events", ["venue_id", "received_at"])
    op.create_index("events_venue_received_pass", "events", ["venue_id", "received_at"],
                    sqlite_where=has_pass, postgresql_where=has_pass)
    op.create_index("passes_venue_valid_until", "passes", ["venue_id", "valid_until"])


def downgrade() -> None:
    op.drop_index("passes_venue_valid_until", table_name="passes")
    op.drop_index("events_venue_received_pass", table_name="events")
    op.drop_index("events_venue_received", table_name="events")
    op.drop_table("passage_counts")
    op.drop_column("venues", "window_hours")  # SQLite 3.35+ drops a column in place
    op.drop_column("venues", "retention_days")
