"""The private keys the hub holds for a venue: one for signing its deny lists, and pass-issuing keys
when the operator chose hub-side issuing. They are stored sealed (``sealing``) and opened here,
in memory, only to sign; an offline-issuer venue has none."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate.cose import PrivateKey

from . import audit, sealing
from .models import IssuerKey, Operator, Venue


def kek_for(db: Session, *, create: bool = False) -> sealing.Kek:
    """The sealing key of the session's database (``create``: the default file may be made)."""
    return sealing.load_kek(db.get_bind().engine.url, create=create)


def sealing_kek(db: Session) -> sealing.Kek:
    """The sealing key to seal a new secret with: the one that sealed those held already (issuer
    keys, operators' second factors). A hub whose sealing key went missing or was swapped must not
    seal new secrets with another one; the default file is made only for the first."""
    held = (db.scalar(select(IssuerKey.private_sealed).where(IssuerKey.private_sealed.is_not(None)).limit(1))
            or db.scalar(select(Operator.totp_sealed).limit(1)))
    kek = kek_for(db, create=held is None)
    if held is not None and sealing.blob_kek_id(held) != kek.kek_id:
        raise sealing.SealingError(f"this hub's keys are sealed with sealing key "
                                   f"{sealing.blob_kek_id(held).hex()}, but {kek.source} is sealing "
                                   f"key {kek.kek_id.hex()}")
    return kek


def seal_for(db: Session, kid: str, key: PrivateKey) -> bytes:
    """A private key sealed for storage in ``IssuerKey.private_sealed`` (see ``sealing_kek``)."""
    return sealing.seal(sealing_kek(db), kid, key)


def held_key(db: Session, venue: Venue, purpose: str) -> PrivateKey | None:
    """The venue's newest hub-held private key for ``purpose`` ("denylist" or "passes") that is
    neither retired (even from a later time on) nor revoked, or None: nothing is ever signed with
    a key the gates are told to stop trusting. Raises ``sealing.SealingError`` when the key is
    held but the sealing key is missing or wrong."""
    row = db.scalar(select(IssuerKey).where(IssuerKey.venue_id == venue.id,
                                            IssuerKey.purpose == purpose,
                                            IssuerKey.retired_at.is_(None),
                                            IssuerKey.revoked_at.is_(None),
                                            IssuerKey.private_sealed.is_not(None))
                    .order_by(IssuerKey.id.desc()).limit(1))
    if row is None or row.private_sealed is None:
        return None
    return sealing.open_sealed(kek_for(db), row.kid, row.private_sealed)


def reseal(db: Session, new: sealing.Kek) -> int:
    """Rotate the sealing key: open every sealed key (and operator's second factor) with the current
    one and seal it with ``new``,
    in the caller's transaction (all rows or none); returns how many. Rows are locked, so a key
    added meanwhile waits and is not left under the old sealing key."""
    old = kek_for(db)
    rows = list(db.scalars(select(IssuerKey).where(IssuerKey.private_sealed.is_not(None))
                           .order_by(IssuerKey.id).with_for_update()))
    for row in rows:
        assert row.private_sealed is not None
        row.private_sealed = sealing.seal(new, row.kid, sealing.open_sealed(old, row.kid, row.private_sealed))
    operators = list(db.scalars(select(Operator).order_by(Operator.id).with_for_update()))
    for person in operators:
        person.totp_sealed = sealing.seal_secret(new, person.name,
                                                 sealing.open_secret(old, person.name, person.totp_sealed))
    audit.record(db, "seal.rotate", None, kek_id=new.kek_id.hex(), resealed=len(rows) + len(operators))
    return len(rows) + len(operators)


def seal_status(db: Session) -> dict[str, object]:
    """Where the sealing key comes from, its id, and how many keys each sealing key sealed."""
    source = sealing.configured(db.get_bind().engine.url)[0]
    try:
        kek_id: str | None = kek_for(db).kek_id.hex()
        problem = None
    except sealing.SealingError as exc:
        kek_id, problem = None, str(exc)
    by_kek: dict[str, int] = {}
    blobs = [*db.scalars(select(IssuerKey.private_sealed).where(IssuerKey.private_sealed.is_not(None))),
             *db.scalars(select(Operator.totp_sealed))]
    for blob in blobs:
        assert blob is not None
        sealed_by = sealing.blob_kek_id(blob).hex()
        by_kek[sealed_by] = by_kek.get(sealed_by, 0) + 1
    return {"source": source, "kek_id": kek_id, "problem": problem, "sealed_keys": by_kek,
            "matches_all_keys": kek_id is not None and set(by_kek) <= {kek_id}}
