"""operators and their scope: principals with grants, API key and gate token lifecycle, audit log

Every API key made before grants existed becomes a hub-wide admin (what it could do until now),
so nothing breaks for existing operators.

Revision ID: 0004
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("principal_id", sa.Integer(), sa.ForeignKey("principals.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("venue_id", sa.Integer(), sa.ForeignKey("venues.id"), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("principal_id", "venue_id"),
    )
    op.create_index("ix_grants_principal_id", "grants", ["principal_id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("principal_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("rotated_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.Double(), nullable=True))
    _existing_keys_become_hub_wide_admins()
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("principal_id", existing_type=sa.Integer(), nullable=False)
        batch.create_unique_constraint("uq_api_keys_principal_id", ["principal_id"])
        batch.create_foreign_key("fk_api_keys_principal_id", "principals", ["principal_id"], ["id"])
    with op.batch_alter_table("gates") as batch:
        batch.alter_column("token_hash", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column("token_changed_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("disabled_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.Double(), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("venue_id", sa.Integer(), sa.ForeignKey("venues.id"), nullable=True),
        sa.Column("target", sa.String(length=256), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("audit_log_venue", "audit_log", ["venue_id", "id"])


def _existing_keys_become_hub_wide_admins() -> None:
    connection = op.get_bind()
    principals = sa.Table("principals", sa.MetaData(), sa.Column("id", sa.Integer(), primary_key=True),
                          sa.Column("kind", sa.String()), sa.Column("created_at", sa.Double()))
    grants = sa.table("grants", sa.column("principal_id", sa.Integer()), sa.column("venue_id", sa.Integer()),
                      sa.column("role", sa.String()))
    keys = sa.table("api_keys", sa.column("id", sa.Integer()), sa.column("created_at", sa.Double()),
                    sa.column("principal_id", sa.Integer()))
    existing = connection.execute(sa.select(keys.c.id, keys.c.created_at).order_by(keys.c.id)).all()
    for key_id, created_at in existing:
        inserted = connection.execute(principals.insert().values(kind="api_key", created_at=created_at))
        assert inserted.inserted_primary_key is not None
        principal_id = inserted.inserted_primary_key[0]
        connection.execute(grants.insert().values(principal_id=principal_id, venue_id=None, role="admin"))
        connection.execute(keys.update().where(keys.c.id == key_id).values(principal_id=principal_id))


def downgrade() -> None:
    """Back to unscoped keys: only hub-wide admin keys that are not revoked are kept (any other
    would become one); gates without a token get an unusable hash (the column is not null
    again); disabled and deleted are lost."""
    op.drop_index("audit_log_venue", table_name="audit_log")
    op.drop_table("audit_log")
    op.execute("DELETE FROM api_keys WHERE revoked_at IS NOT NULL OR principal_id NOT IN "
               "(SELECT principal_id FROM grants WHERE venue_id IS NULL AND role = 'admin')")
    op.execute("UPDATE gates SET token_hash = 'revoked:' || id WHERE token_hash IS NULL")
    with op.batch_alter_table("gates") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("disabled_at")
        batch.drop_column("token_changed_at")
        batch.alter_column("token_hash", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("fk_api_keys_principal_id", type_="foreignkey")
        batch.drop_constraint("uq_api_keys_principal_id", type_="unique")
        batch.drop_column("revoked_at")
        batch.drop_column("rotated_at")
        batch.drop_column("last_used_at")
        batch.drop_column("principal_id")
    op.drop_index("ix_grants_principal_id", table_name="grants")
    op.drop_table("grants")
    op.drop_table("principals")
