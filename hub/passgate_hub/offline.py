"""Offline issuing: passes and deny lists signed where the private key lives, verified here.

An offline-issuer venue (``Venue.offline``) has only public keys on the hub. Its passes are
signed with ``passgate issue`` and recorded here (``record_passes``) only once their signature
verifies with a pass key the venue trusts. Its deny lists change on the hub as any venue's do
(revoke, block, unblock), but the change stays pending: ``pending`` prepares the unsigned list,
``passgate denylist sign`` signs it offline, and ``accept_signed`` takes the signed snapshot and
delta back after checking the signature (the venue's deny-list key) and that they hold exactly
the pending change. Until then gates keep the version signed before. Recording signed passes
works for any venue (passes issued elsewhere with a key the venue trusts).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from passgate import PassRefused, TrustStore, denylist, verify_signature, wire
from passgate.keys import TrustedKey
from passgate.pending import PendingList

from . import audit, denylists
from .models import DenyDelta, DenyEntry, DenySnapshot, IssuedPass, IssuerKey, Venue
from .ops import Conflict, Invalid


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _trust(db: Session, venue: Venue, purpose: wire.KeyPurpose) -> TrustStore:
    rows = db.scalars(select(IssuerKey).where(IssuerKey.venue_id == venue.id,
                                              IssuerKey.purpose == purpose))
    return TrustStore(TrustedKey(serialization.load_pem_public_key(row.public_pem.encode()),  # type: ignore[arg-type]
                                 issuer=row.issuer, retired=_at(row.retired_at),
                                 revoked=_at(row.revoked_at), purpose=purpose,
                                 scope=venue.name if purpose is wire.KeyPurpose.DENYLIST else None)
                      for row in rows)


def record_passes(db: Session, venue: Venue, texts: Iterable[str]) -> dict[str, Any]:
    """Record passes signed outside the hub, all or none: each must verify with a pass key the
    venue trusts (not revoked, issued inside a retired key's window). A pass already recorded
    for the venue is counted, not recorded twice."""
    trust = _trust(db, venue, wire.KeyPurpose.PASSES)
    checked = []
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise Invalid("no passes given")
    for number, text in enumerate(texts, start=1):
        try:
            checked.append(verify_signature(text, trust))
        except PassRefused as refused:
            detail = f": {refused.detail}" if refused.detail else ""
            raise Invalid(f"pass {number} of {len(texts)} refused, nothing recorded: "
                          f"{refused.reason.value}{detail}") from None
    ids = [p.pass_id_hex for p in checked]
    held = dict(db.execute(select(IssuedPass.pass_id, IssuedPass.venue_id)
                           .where(IssuedPass.pass_id.in_(ids))).all())
    other = [i for i in ids if i in held and held[i] != venue.id]
    if other:
        raise Conflict(f"pass {other[0]} is recorded for another venue")
    now = time.time()
    new = {p.pass_id_hex: p for p in checked if p.pass_id_hex not in held}
    db.add_all(IssuedPass(pass_id=p.pass_id_hex, venue_id=venue.id, kid=p.kid.hex(),
                          product=p.product, zones=list(p.zones), entries=p.entries,
                          valid_from=p.valid_from, valid_until=p.valid_until,
                          issued_at=p.issued_at if p.issued_at is not None else now)
               for p in new.values())
    audit.record(db, "passes.record", venue.name, venues=[venue], recorded=len(new),
                 already=len(ids) - len(new))
    return {"recorded": len(new), "already": len(ids) - len(new)}


def _offline(venue: Venue) -> None:
    if not venue.offline:
        raise Conflict(f"{venue.name!r} is not an offline-issuer venue: the hub signs its lists")


def _ids(db: Session, query: Any) -> list[bytes]:
    return [bytes.fromhex(p) for p in db.scalars(query)]


def pending(db: Session, venue: Venue, kind: str) -> PendingList:
    """The unsigned ``kind`` list at its next version: every id on it, and the change from the
    version gates hold now (empty when nothing changed: signing it again refreshes the list's
    age, which gates judge)."""
    _offline(venue)
    if kind not in denylists.KINDS:
        raise Invalid(f"no list {kind!r}; lists are {', '.join(denylists.KINDS)}")
    base = denylists.current_versions(db, venue)[kind][0]
    rows = select(DenyEntry.pass_id).where(DenyEntry.venue_id == venue.id, DenyEntry.kind == kind)
    return PendingList(
        kind=kind, scope=venue.name, base=base,
        ids=tuple(_ids(db, rows.where(DenyEntry.version_removed.is_(None)))),
        adds=tuple(_ids(db, rows.where(DenyEntry.version_added > base,
                                       DenyEntry.version_removed.is_(None)))),
        removes=tuple(_ids(db, rows.where(DenyEntry.version_added <= base,
                                          DenyEntry.version_removed > base))))


def _keys(ids: Iterable[bytes]) -> np.ndarray:
    return denylist.keys_from_ids(ids)


def accept_signed(db: Session, venue: Venue, data: bytes) -> dict[str, Any]:
    """Take a signed snapshot or delta of an offline-issuer venue's list: refused unless the
    venue's deny-list key signed it and it holds exactly the pending change. The snapshot of the
    next version comes first (it moves the version gates are sent); the delta that leads to it
    may follow."""
    _offline(venue)
    try:
        signed = denylist.read_signed(data, _trust(db, venue, wire.KeyPurpose.DENYLIST),
                                      max_bytes=denylist.DEFAULT_MAX_BYTES)
    except denylist.DenyListError as exc:
        raise Invalid(f"refused: {exc}") from None
    row = denylists.locked_list(db, venue, signed.kind)
    if isinstance(signed, denylist.DenyList):
        done = _accept_snapshot(db, venue, row, signed, data)
    else:
        done = _accept_delta(db, venue, row, signed, data)
    audit.record(db, "denylist.upload", f"{venue.name}/{signed.kind}", venues=[venue], **done)
    return done


def _accept_snapshot(db: Session, venue: Venue, row: Any, snapshot: denylist.DenyList,
                     data: bytes) -> dict[str, Any]:
    if snapshot.version != row.version + 1:
        raise Conflict(f"refused: a snapshot of version {snapshot.version}; the hub waits for "
                       f"version {row.version + 1} of the {row.kind} list (see denylist pending)")
    if snapshot.issued_at < row.issued_at:
        raise Conflict("refused: signed before the version gates hold now")
    expected = pending(db, venue, row.kind)
    if not np.array_equal(snapshot.keys, _keys(expected.ids)):
        raise Conflict(f"refused: the signed {row.kind} list differs from the hub's pending one "
                       f"({len(snapshot)} entries signed, {len(expected.ids)} pending); prepare "
                       "and sign it again")
    stored = db.get(DenySnapshot, (venue.id, row.kind))
    if stored is None:
        db.add(DenySnapshot(venue_id=venue.id, kind=row.kind, version=snapshot.version, data=data))
    else:
        stored.version, stored.data = snapshot.version, data
    row.version, row.issued_at = snapshot.version, snapshot.issued_at
    return {"kind": row.kind, "file": denylist.SNAPSHOT, "version": snapshot.version}


def _accept_delta(db: Session, venue: Venue, row: Any, delta: denylist.Delta,
                  data: bytes) -> dict[str, Any]:
    if delta.version == row.version + 1:
        raise Conflict(f"refused: upload the snapshot of version {delta.version} first (gates far "
                       "behind or new need it), then this delta")
    if delta.version != row.version or delta.issued_at != row.issued_at:
        raise Conflict(f"refused: a delta {delta.base}→{delta.version} signed at {delta.issued_at}; "
                       f"the hub accepts only the one leading to its {row.kind} list's version "
                       f"{row.version}, signed with it")
    if db.get(DenyDelta, (venue.id, row.kind, delta.base)) is not None:
        return {"kind": row.kind, "file": denylist.DELTA, "version": delta.version}
    rows = select(DenyEntry.pass_id).where(DenyEntry.venue_id == venue.id, DenyEntry.kind == row.kind)
    adds = _ids(db, rows.where(DenyEntry.version_added == row.version,
                               (DenyEntry.version_removed.is_(None))
                               | (DenyEntry.version_removed > row.version)))
    removes = _ids(db, rows.where(DenyEntry.version_added < row.version,
                                  DenyEntry.version_removed == row.version))
    if not (np.array_equal(delta.adds, _keys(adds)) and np.array_equal(delta.removes, _keys(removes))):
        raise Conflict(f"refused: the signed delta differs from the change the hub made at version "
                       f"{row.version}")
    db.add(DenyDelta(venue_id=venue.id, kind=row.kind, base=delta.base, data=data))
    return {"kind": row.kind, "file": denylist.DELTA, "version": delta.version}
