"""deny-list entries indexed by the versions that added and removed them

A gate far behind is sent one compacted delta with every change between its version and the newest
(``denylists.compacted``), read from these indexes instead of the whole list.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("deny_entries_added", "deny_entries", ["venue_id", "kind", "version_added"])
    op.create_index("deny_entries_removed", "deny_entries", ["venue_id", "kind", "version_removed"])


def downgrade() -> None:
    op.drop_index("deny_entries_removed", table_name="deny_entries")
    op.drop_index("deny_entries_added", table_name="deny_entries")
