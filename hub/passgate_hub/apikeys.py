"""Admin API keys: created with their grants, listed (never their secret or its hash), rotated and
revoked. Shared by the admin API and the CLI (which acts with ``scope.EVERYTHING``).

A key is managed only by a holder of admin on every venue it reaches (hub-wide admin for a
hub-wide key), so an admin of one venue can neither hand out nor take away access to another.
Each function works in the caller's session and leaves the commit to it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, credentials
from .models import ApiKey, Grant, Principal, Venue
from .ops import Conflict, Invalid, NotFound, get_venue
from .scope import Forbidden, Role, Scope

PRINCIPAL_KIND = "api_key"


def _grants(db: Session, key: ApiKey) -> list[tuple[str | None, Role]]:
    """``(venue name or None for every venue, role)``, hub-wide first."""
    rows = db.execute(select(Venue.name, Grant.role).outerjoin(Venue, Venue.id == Grant.venue_id)
                      .where(Grant.principal_id == key.principal_id))
    return sorted(((name, Role(role)) for name, role in rows), key=lambda g: (g[0] is not None, g[0] or ""))


def _manageable(db: Session, key: ApiKey, by: Scope) -> bool:
    return by.covers_all([venue for venue, _ in _grants(db, key)], Role.ADMIN)


def create(db: Session, name: str, *, role: Role, venues: Sequence[str] = (), all_venues: bool = False,
           by: Scope) -> str:
    """A new key with ``role`` on each of ``venues``, or on every venue (``all_venues``: also
    those created later). The secret is returned once; only its hash is kept."""
    if all_venues == bool(venues):
        raise Invalid("name the key's venues (--venue) or give --all-venues, one of the two")
    if all_venues:
        by.check_hub_wide(Role.ADMIN)
    for venue in venues:
        by.check(venue, Role.ADMIN)  # before looking it up: a venue outside the grants is not told of
    targets: list[Venue | None] = [None] if all_venues else [get_venue(db, v) for v in dict.fromkeys(venues)]
    if db.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise Conflict(f"API key {name!r} exists (names are not reused, even once revoked)")
    now = time.time()
    principal = Principal(kind=PRINCIPAL_KIND, created_at=now)
    db.add(principal)
    db.flush()
    secret, digest = credentials.new_secret(credentials.ADMIN_PREFIX)
    db.add(ApiKey(name=name, key_hash=digest, created_at=now, principal_id=principal.id))
    db.add_all(Grant(principal_id=principal.id, venue_id=v.id if v is not None else None, role=role)
               for v in targets)
    audit.record(db, "apikey.create", name, venues=targets, role=str(role))
    return secret


def describe(db: Session, key: ApiKey) -> dict[str, Any]:
    """A key as the API and the CLI list it: never its secret, nor its hash."""
    return {"name": key.name, "grants": [{"venue": v, "role": str(r)} for v, r in _grants(db, key)],
            "created_at": key.created_at, "last_used_at": key.last_used_at,
            "rotated_at": key.rotated_at, "revoked_at": key.revoked_at}


def list_keys(db: Session, *, by: Scope) -> list[dict[str, Any]]:
    """The keys ``by`` may manage, by name, revoked ones too."""
    keys = db.scalars(select(ApiKey).order_by(ApiKey.name))
    return [describe(db, key) for key in keys if _manageable(db, key, by)]


def _get(db: Session, name: str, by: Scope) -> tuple[ApiKey, list[Venue | None]]:
    key = db.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise NotFound(f"no API key {name!r}")
    grants = _grants(db, key)
    if not by.covers_all([venue for venue, _ in grants], Role.ADMIN):
        raise Forbidden(f"API key {name!r} reaches venues this credential does not administer "
                        f"(it holds: {by.describe()})")
    if key.revoked_at is not None:
        raise Conflict(f"API key {name!r} is revoked")
    return key, [get_venue(db, v) if v is not None else None for v, _ in grants]


def rotate(db: Session, name: str, *, by: Scope) -> str:
    """A new secret for the key (returned once); the old one is refused from the commit on."""
    key, venues = _get(db, name, by)
    secret, key.key_hash = credentials.new_secret(credentials.ADMIN_PREFIX)
    key.rotated_at = time.time()
    audit.record(db, "apikey.rotate", name, venues=venues)
    return secret


def revoke(db: Session, name: str, *, by: Scope) -> dict[str, Any]:
    """Refuse the key from the commit on (kept, listed as revoked; its name is not reused)."""
    key, venues = _get(db, name, by)
    key.revoked_at = time.time()
    audit.record(db, "apikey.revoke", name, venues=venues)
    return describe(db, key)
