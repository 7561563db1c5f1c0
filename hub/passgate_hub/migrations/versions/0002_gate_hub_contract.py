"""the gate↔hub contract: trusted times, alerts, key roles, list epochs

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _ingest()
    _keys_and_lists()


def _ingest() -> None:
    """Events keep the hub's receive time and a bounded hub time; alerts."""


def _keys_and_lists() -> None:
    """Key roles (revocation, list scope) and list versions with an epoch."""


def downgrade() -> None:
    _keys_and_lists_down()
    _ingest_down()


def _ingest_down() -> None:
    pass


def _keys_and_lists_down() -> None:
    pass
