"""events indexed by the gate's time within a venue, for pages filtered by time

A filter on time ("since midnight") paged in hub order read every older event before the first one
in range: seconds at 10 M events. Such pages now go in time order over this index.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("events_venue_t", "events", ["venue_id", "t", "seq"])


def downgrade() -> None:
    op.drop_index("events_venue_t", table_name="events")
