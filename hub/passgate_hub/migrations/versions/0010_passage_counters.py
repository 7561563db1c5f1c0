"""passage counters: totals per gate and direction, entries per venue and minute, kept by ingest

The live counts and the day's chart read these instead of scanning the events. The totals take in
``passage_counts`` (the passages of events the purge deleted), which goes: they already hold every
passage, so the purge adds nothing. The events of one gate are indexed in hub order (``seq``, what
the console's events page pages by) instead of by the gate's time, which nothing reads that way
now that the counts do not join the events.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# One passage is one event of these kinds, a ``passage`` only with a detail (``wire.counts_as_passage``
# as of this revision), in one of the two directions.
PASSAGE = ("kind IN ('redeemed', 'reservation_assumed', 'forced_passage', 'passage') "
           "AND (kind <> 'passage' OR coalesce(detail, '') <> '') AND direction IN ('entry', 'exit')")


def upgrade() -> None:
    op.create_table(
        "passage_totals",
        sa.Column("venue_id", sa.Integer(), sa.ForeignKey("venues.id"), nullable=False),
        sa.Column("gate_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("passages", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("venue_id", "gate_id", "direction"),
    )
    op.create_table(
        "entry_minutes",
        sa.Column("venue_id", sa.Integer(), sa.ForeignKey("venues.id"), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("venue_id", "minute", "shard"),
    )
    op.execute(f"""
        INSERT INTO passage_totals (venue_id, gate_id, direction, passages)
        SELECT venue_id, gate_id, direction, sum(n) FROM (
            SELECT venue_id, gate_id, direction, count(*) AS n FROM events WHERE {PASSAGE}
            GROUP BY venue_id, gate_id, direction
            UNION ALL
            SELECT venue_id, gate_id, direction, passages FROM passage_counts
        ) AS counted GROUP BY venue_id, gate_id, direction""")
    # the minute as ingest takes it, hub_t // 60 (CAST truncates on SQLite, rounds on PostgreSQL);
    # a past event's entries all go to shard 0 (a shard only spreads the rows concurrent batches lock)
    minute = "CAST(floor(hub_t / 60) AS integer)" if op.get_bind().dialect.name == "postgresql" else \
        "CAST(hub_t / 60 AS integer)"
    op.execute(f"""
        INSERT INTO entry_minutes (venue_id, minute, shard, entries)
        SELECT venue_id, {minute}, 0, count(*) FROM events
        WHERE {PASSAGE} AND direction = 'entry' AND hub_t >= 0 AND hub_t < 2147483648.0 * 60
        GROUP BY venue_id, {minute}""")
    op.drop_table("passage_counts")
    op.create_index("events_gate_seq", "events", ["gate_id", "seq"])
    op.drop_index("events_gate_t", table_name="events")


def downgrade() -> None:
    op.create_index("events_gate_t", "events", ["gate_id", "t"])
    op.drop_index("events_gate_seq", table_name="events")
    op.create_table(
        "passage_counts",
        sa.Column("venue_id", sa.Integer(), sa.ForeignKey("venues.id"), nullable=False),
        sa.Column("gate_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("passages", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("venue_id", "gate_id", "day", "direction"),
    )
    # the passages of purged events: the totals less those of the events held (their days are not
    # known any more: day 0; the counts sum over days)
    op.execute(f"""
        INSERT INTO passage_counts (venue_id, gate_id, day, direction, passages)
        SELECT t.venue_id, t.gate_id, 0, t.direction, t.passages - coalesce(held.n, 0)
        FROM passage_totals AS t LEFT JOIN (
            SELECT venue_id, gate_id, direction, count(*) AS n FROM events WHERE {PASSAGE}
            GROUP BY venue_id, gate_id, direction
        ) AS held ON held.venue_id = t.venue_id AND held.gate_id = t.gate_id AND held.direction = t.direction
        WHERE t.passages > coalesce(held.n, 0)""")
    op.drop_table("entry_minutes")
    op.drop_table("passage_totals")
