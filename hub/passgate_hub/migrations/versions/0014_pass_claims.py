"""pass_claims: the one-time claim code (its hash) of each holder-bound pass, and its claim

A holder-bound pass is signed only when its holder claims it with the wallet (``claims``), with the
holder's public key inside; until then the hub holds its record and this row. Deleted with the pass
record (its retention).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pass_claims",
        sa.Column("pass_id", sa.String(length=32), sa.ForeignKey("passes.pass_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("code_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("code_made_at", sa.Double(), nullable=False),
        sa.Column("reentry", sa.Boolean(), nullable=False),
        sa.Column("holder_step", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.Double(), nullable=True),
        sa.Column("holder_thumbprint", sa.String(length=64), nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pass_claims")
