"""sealed private keys, offline-issuer venues

Every plain-text private key (``issuer_keys.private_pem``) is sealed with the hub's sealing key
into ``private_sealed`` and the plain column is dropped. The migration needs the sealing key: it
runs at hub start (``passgate-hub serve``, any CLI command), which reads it as the hub does
(``sealing.load_kek``). A database holding plain keys with no sealing key available refuses to
migrate, so the hub refuses to start rather than keep plain keys. On SQLite the freed pages are
zeroed (``secure_delete``) so the plain keys leave the file too.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from cryptography.hazmat.primitives import serialization

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_keys = sa.table("issuer_keys", sa.column("id", sa.Integer()), sa.column("kid", sa.String()),
                 sa.column("private_pem", sa.Text()), sa.column("private_sealed", sa.LargeBinary()))


def upgrade() -> None:
    from passgate_hub import sealing

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")  # the dropped column's pages are zeroed, not freed
    op.add_column("issuer_keys", sa.Column("private_sealed", sa.LargeBinary(), nullable=True))
    rows = bind.execute(sa.select(_keys.c.id, _keys.c.kid, _keys.c.private_pem)
                        .where(_keys.c.private_pem.is_not(None))).all()
    if rows:
        try:
            kek = sealing.load_kek(bind.engine.url, create=True)
        except sealing.SealingError as exc:
            raise sealing.SealingError(f"this database holds {len(rows)} private keys in plain text "
                                       f"and they must be sealed before the hub starts: {exc}") from None
        for row_id, kid, pem in rows:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
            bind.execute(_keys.update().where(_keys.c.id == row_id)
                         .values(private_sealed=sealing.seal(kek, kid, key)))  # type: ignore[arg-type]
    with op.batch_alter_table("issuer_keys") as batch:
        batch.drop_column("private_pem")
    # (a plain ADD COLUMN: SQLite's batch copy of a table other tables refer to breaks their keys)
    op.add_column("venues", sa.Column("offline", sa.Boolean(), nullable=False,
                                      server_default=sa.text("false")))
    op.create_table(
        "deny_snapshots",
        sa.Column("venue_id", sa.Integer(), sa.ForeignKey("venues.id"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("venue_id", "kind"),
    )


def downgrade() -> None:
    """Back to plain keys (needs the sealing key): only to roll back an upgrade of the software."""
    from passgate_hub import sealing

    bind = op.get_bind()
    op.drop_table("deny_snapshots")
    op.drop_column("venues", "offline")
    op.add_column("issuer_keys", sa.Column("private_pem", sa.Text(), nullable=True))
    rows = bind.execute(sa.select(_keys.c.id, _keys.c.kid, _keys.c.private_sealed)
                        .where(_keys.c.private_sealed.is_not(None))).all()
    if rows:
        kek = sealing.load_kek(bind.engine.url)
        for row_id, kid, blob in rows:
            pem = sealing.open_sealed(kek, kid, blob).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode()
            bind.execute(_keys.update().where(_keys.c.id == row_id).values(private_pem=pem))
    with op.batch_alter_table("issuer_keys") as batch:
        batch.drop_column("private_sealed")
