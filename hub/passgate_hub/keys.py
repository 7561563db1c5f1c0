"""The private keys the hub holds for a venue: one for signing its deny lists, and pass-issuing keys
when the operator chose hub-side issuing."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.cose import PrivateKey

from .models import IssuerKey, Venue


def held_key(db: Session, venue: Venue, purpose: str) -> PrivateKey | None:
    """The venue's newest hub-held private key for ``purpose`` ("denylist" or "passes") that is
    neither retired (even from a later time on) nor revoked, or None: nothing is ever signed with
    a key the gates are told to stop trusting."""
    row = db.scalar(select(IssuerKey).where(IssuerKey.venue_id == venue.id,
                                            IssuerKey.purpose == purpose,
                                            IssuerKey.retired_at.is_(None),
                                            IssuerKey.revoked_at.is_(None),
                                            IssuerKey.private_pem.is_not(None))
                    .order_by(IssuerKey.id.desc()).limit(1))
    if row is None or row.private_pem is None:
        return None
    return serialization.load_pem_private_key(row.private_pem.encode(), password=None)  # type: ignore[return-value]
