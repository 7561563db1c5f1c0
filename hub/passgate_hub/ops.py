"""The operator's operations, shared by the admin API and the CLI so both behave the same.

Each function works inside the caller's session and leaves the commit to it. ``NotFound`` and
``Conflict`` carry a one-line message for the operator (404 / 409 over HTTP).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from passgate import cose, generate_private_key, issue_pass, key_id
from passgate.keys import public_pem

from . import auth, denylists
from .keys import held_key
from .models import ApiKey, DenyList, Event, Gate, IssuedPass, IssuerKey, Venue, Zone

# A passage counts once: a committed (or crash-assumed) redemption, a forced passage, or a passage
# without a pass (a free exit); "passage" events that carry a pass id repeat a redemption.
COUNTED_KINDS = ("redeemed", "reservation_assumed", "forced_passage")


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def create_api_key(db: Session, name: str) -> str:
    """A new admin API key; the secret is returned once and only its hash is kept."""
    if db.scalar(select(ApiKey).where(ApiKey.name == name)):
        raise Conflict(f"API key {name!r} exists")
    secret, digest = auth.new_secret(auth.ADMIN_PREFIX)
    db.add(ApiKey(name=name, key_hash=digest, created_at=time.time()))
    return secret


def create_venue(db: Session, name: str) -> Venue:
    """A venue with its deny-list signing key and empty revoked/blocked lists (version 0)."""
    if db.scalar(select(Venue).where(Venue.name == name)):
        raise Conflict(f"venue {name!r} exists")
    venue = Venue(name=name, keys_rev=0, created_at=time.time())
    db.add(venue)
    db.flush()
    _add_key(db, venue, generate_private_key(), purpose="denylist", issuer=f"{name} deny lists")
    db.add_all(DenyList(venue_id=venue.id, kind=kind, version=0, issued_at=0)
               for kind in denylists.KINDS)
    return venue


def get_venue(db: Session, name: str) -> Venue:
    venue = db.scalar(select(Venue).where(Venue.name == name))
    if venue is None:
        raise NotFound(f"no venue {name!r}")
    return venue


def list_venues(db: Session) -> list[dict[str, Any]]:
    out = []
    for venue in db.scalars(select(Venue).order_by(Venue.name)):
        zones = db.scalars(select(Zone.name).where(Zone.venue_id == venue.id).order_by(Zone.name))
        kid = db.scalar(select(IssuerKey.kid).where(IssuerKey.venue_id == venue.id,
                                                    IssuerKey.purpose == "denylist"))
        out.append({"name": venue.name, "zones": list(zones), "denylist_kid": kid})
    return out


def create_zone(db: Session, venue: Venue, name: str) -> Zone:
    if db.scalar(select(Zone).where(Zone.venue_id == venue.id, Zone.name == name)):
        raise Conflict(f"zone {name!r} exists in {venue.name!r}")
    zone = Zone(venue_id=venue.id, name=name)
    db.add(zone)
    return zone


def create_gate(db: Session, venue: Venue, gate_id: str, zone: str | None = None,
                config: dict[str, Any] | None = None) -> str:
    """Register a gate; returns its token (shown once: the hub keeps only the hash)."""
    if db.scalar(select(Gate).where(Gate.gate_id == gate_id)):
        raise Conflict(f"gate {gate_id!r} exists")
    zone_id = None
    if zone is not None:
        zone_id = db.scalar(select(Zone.id).where(Zone.venue_id == venue.id, Zone.name == zone))
        if zone_id is None:
            raise NotFound(f"no zone {zone!r} in {venue.name!r}")
    token, digest = auth.new_secret(auth.GATE_PREFIX)
    db.add(Gate(gate_id=gate_id, venue_id=venue.id, zone_id=zone_id, token_hash=digest,
                config=config or {}, created_at=time.time()))
    return token


def _add_key(db: Session, venue: Venue, key: Any, *, purpose: str, issuer: str | None) -> IssuerKey:
    """``key``: a private key (the hub signs with it) or a public one (trusted only)."""
    private = None
    if hasattr(key, "private_bytes"):
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    kid = key_id(key).hex()
    if db.scalar(select(IssuerKey).where(IssuerKey.venue_id == venue.id, IssuerKey.kid == kid)):
        raise Conflict(f"key {kid} is already held for {venue.name!r}")
    row = IssuerKey(venue_id=venue.id, kid=kid, purpose=purpose, issuer=issuer,
                    public_pem=public_pem(key).decode(), private_pem=private, created_at=time.time())
    db.add(row)
    venue.keys_rev += 1
    return row


def add_key(db: Session, venue: Venue, *, public_pem_text: str | None = None, generate: bool = False,
            alg: str = "ed25519", issuer: str | None = None) -> IssuerKey:
    """Trust a pass issuer's public key, or generate one the hub issues with."""
    if generate == (public_pem_text is not None):
        raise Conflict("give either a public key or generate=true")
    if generate:
        key: Any = generate_private_key(alg)
    else:
        try:
            key = serialization.load_pem_public_key(public_pem_text.encode())  # type: ignore[union-attr]
            key_id(key)
            cose.algorithm_for(key)
        except (ValueError, TypeError, cose.CoseError):
            raise Conflict("not a PEM Ed25519 or P-256 public key") from None
    return _add_key(db, venue, key, purpose="passes", issuer=issuer)


def list_keys(db: Session, venue: Venue) -> list[IssuerKey]:
    return list(db.scalars(select(IssuerKey).where(IssuerKey.venue_id == venue.id)
                           .order_by(IssuerKey.id)))


def issue(db: Session, venue: Venue, *, count: int, valid_from: float, valid_until: float,
          zones: Iterable[str] = (), entries: int | None = None, product: str | None = None,
          reentry: bool = False, record: bool = True) -> tuple[str, list[tuple[str, str]]]:
    """Sign ``count`` passes with the venue's newest hub-held issuer key: ``(kid, [(id, text)])``."""
    key = held_key(db, venue, "passes")
    if key is None:
        raise NotFound(f"venue {venue.name!r} has no hub-held issuer key (generate one first)")
    kid = key_id(key).hex()
    zones = list(zones)
    now = time.time()
    out = []
    for _ in range(count):
        pass_id = os.urandom(16)
        try:
            text = issue_pass(key, valid_from=valid_from, valid_until=valid_until,  # type: ignore[arg-type]
                              zones=zones, entries=entries, product=product, reentry=reentry,
                              pass_id=pass_id, issued_at=now)
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        out.append((pass_id.hex(), text))
    if record:
        db.add_all(IssuedPass(pass_id=p, venue_id=venue.id, kid=kid, product=product, zones=zones,
                              entries=entries, valid_from=valid_from, valid_until=valid_until,
                              issued_at=now) for p, _ in out)
    return kid, out


def list_gates(db: Session, venue: Venue | None = None, *, now: float | None = None) -> list[dict[str, Any]]:
    """Gates with what their last heartbeat said: backlog, version, list ages (aged to now)."""
    now = time.time() if now is None else now
    query = (select(Gate, Venue.name, Zone.name).join(Venue, Gate.venue_id == Venue.id)
             .outerjoin(Zone, Gate.zone_id == Zone.id).order_by(Gate.gate_id))
    if venue is not None:
        query = query.where(Gate.venue_id == venue.id)
    out = []
    for gate, venue_name, zone_name in db.execute(query):
        health = gate.health or {}
        since = now - gate.last_seen if gate.last_seen is not None else 0.0
        lists = {kind: {"version": info.get("version"),
                        "age_s": info["age_s"] + since if info.get("age_s") is not None else None}
                 for kind, info in (health.get("lists") or {}).items()}
        skew = health["t"] - health["received"] if "t" in health and "received" in health else None
        out.append({"gate_id": gate.gate_id, "venue": venue_name, "zone": zone_name,
                    "last_seen": gate.last_seen, "backlog": health.get("backlog"),
                    "version": health.get("version"), "lists": lists, "clock_skew_s": skew})
    return out


def query_events(db: Session, venue: Venue, *, gate_id: str | None = None, kind: str | None = None,
                 after: int = 0, since: float | None = None, until: float | None = None,
                 limit: int = 1000) -> list[Event]:
    """Events of a venue in hub order (``seq``), filtered; page with ``after`` = last seq."""
    query = select(Event).where(Event.venue_id == venue.id, Event.seq > after)
    if gate_id is not None:
        query = query.where(Event.gate_id == gate_id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    if since is not None:
        query = query.where(Event.t >= since)
    if until is not None:
        query = query.where(Event.t < until)
    return list(db.scalars(query.order_by(Event.seq).limit(limit)))


def zone_counts(db: Session, venue: Venue) -> list[dict[str, Any]]:
    """Live counts per zone: passages in and out through the zone's gates; inside = in − out."""
    counted = Event.kind.in_(COUNTED_KINDS) | ((Event.kind == "passage") & Event.pass_id.is_(None))
    entries = func.sum(case((Event.direction == "entry", 1), else_=0))
    exits = func.sum(case((Event.direction == "exit", 1), else_=0))
    rows = db.execute(
        select(Zone.name, entries, exits)
        .select_from(Zone)
        .outerjoin(Gate, Gate.zone_id == Zone.id)
        .outerjoin(Event, (Event.gate_id == Gate.gate_id) & counted)
        .where(Zone.venue_id == venue.id)
        .group_by(Zone.name).order_by(Zone.name)
    )
    return [{"zone": name, "entries": int(e or 0), "exits": int(x or 0), "inside": int(e or 0) - int(x or 0)}
            for name, e, x in rows]
