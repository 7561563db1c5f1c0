"""the gate↔hub contract: trusted times, alerts, key roles, list epochs

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _ingest()
    _keys_and_lists()


def _ingest() -> None:
    """Events keep the hub's receive time and a bounded hub time; alerts."""
    from passgate_hub.models import POS_OFFSET

    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("entries", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("hub_t", sa.Double(), nullable=True))
        batch.add_column(sa.Column("pos", sa.BigInteger(), nullable=True))
    # Rows from before: hub time is their own time bounded by receipt; positions are their seqs,
    # so a gate's cursor (a seq until now) stays valid.
    op.execute("UPDATE events SET pos = seq, "
               "hub_t = CASE WHEN t < received_at THEN t ELSE received_at END")
    op.drop_index("events_venue_redemptions", table_name="events")
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("events") as batch:
        batch.alter_column("hub_t", existing_type=sa.Double(), nullable=False)
        batch.alter_column("pos", existing_type=sa.BigInteger(), nullable=False, server_default=(
            sa.text(f"(pg_current_xact_id()::text::bigint + {POS_OFFSET})") if postgresql else None))
    where = _redemption_kinds()
    op.create_index("events_venue_redemption_pos", "events", ["venue_id", "pos", "seq"],
                    sqlite_where=where, postgresql_where=where)
    has_pass = sa.text("pass_id IS NOT NULL")
    op.create_index("events_pass", "events", ["pass_id"], sqlite_where=has_pass,
                    postgresql_where=has_pass)
    with op.batch_alter_table("gates") as batch:
        batch.add_column(sa.Column("clock_offset_s", sa.Double(), nullable=True))
        batch.add_column(sa.Column("protocol", sa.Integer(), nullable=True))
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("venue_id", sa.Integer(), sa.ForeignKey("venues.id"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("pass_id", sa.String(length=32), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=True),
        sa.Column("redemptions", sa.JSON(), nullable=False),
        sa.Column("apart_s", sa.Double(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "event_id"),
    )
    op.create_index("alerts_venue", "alerts", ["venue_id", "id"])


def _redemption_kinds() -> sa.TextClause:
    from passgate import wire

    return sa.text(f"kind IN ({', '.join(repr(str(k)) for k in wire.REDEMPTION_KINDS)})")


def _keys_and_lists() -> None:
    """Key roles (revocation, list scope) and list versions with an epoch: ``epoch << 32 | change``
    needs 64-bit columns (existing versions are epoch 0 and keep their values)."""
    with op.batch_alter_table("issuer_keys") as batch:
        batch.add_column(sa.Column("revoked_at", sa.Double(), nullable=True))
    for table, columns in (("deny_lists", {"version": False}), ("deny_deltas", {"base": False}),
                           ("deny_entries", {"version_added": False, "version_removed": True})):
        with op.batch_alter_table(table) as batch:
            for column, nullable in columns.items():
                batch.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger(),
                                   existing_nullable=nullable)


def downgrade() -> None:
    _keys_and_lists_down()
    _ingest_down()


def _ingest_down() -> None:
    op.drop_index("alerts_venue", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("gates") as batch:
        batch.drop_column("protocol")
        batch.drop_column("clock_offset_s")
    op.drop_index("events_pass", table_name="events")
    op.drop_index("events_venue_redemption_pos", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("pos")
        batch.drop_column("hub_t")
        batch.drop_column("entries")
    where = _redemption_kinds()
    op.create_index("events_venue_redemptions", "events", ["venue_id", "seq"],
                    sqlite_where=where, postgresql_where=where)


def _keys_and_lists_down() -> None:
    # Fails on PostgreSQL once a list has begun an epoch (its versions no longer fit 32 bits).
    for table, columns in (("deny_lists", {"version": False}), ("deny_deltas", {"base": False}),
                           ("deny_entries", {"version_added": False, "version_removed": True})):
        with op.batch_alter_table(table) as batch:
            for column, nullable in columns.items():
                batch.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Integer(),
                                   existing_nullable=nullable)
    with op.batch_alter_table("issuer_keys") as batch:
        batch.drop_column("revoked_at")
