"""lock_passes function: ingest's per-pass locks and its read in one plain round trip (PostgreSQL)

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# A volatile PL/pgSQL function takes a fresh snapshot for each of its statements (READ COMMITTED):
# the read runs once the locks are held, so it sees a batch that held them before and committed.
# One statement of the caller's could not: its snapshot is taken before its locks are granted.
# The locks: one per pass, in a fixed order (no deadlock between two batches), held until commit.
FUNCTION = """
CREATE FUNCTION passgate_lock_passes(venue integer, ids text[]) RETURNS SETOF events
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(k)
        FROM (SELECT hashtextextended(p, venue) AS k FROM unnest(ids) AS p ORDER BY k) AS keys;
    RETURN QUERY SELECT * FROM events WHERE events.pass_id = ANY(ids) AND events.venue_id = venue;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite has one writer: no locks to take
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION passgate_lock_passes(integer, text[])")
