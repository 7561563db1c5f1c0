"""The operator's operations, shared by the admin API and the CLI so both behave the same.

Each function works inside the caller's session and leaves the commit to it; each change is put in
the audit log (``audit.record``) in that session. ``NotFound``, ``Conflict`` and ``Invalid`` carry
a one-line message for the operator (404 / 409 / 422 over HTTP).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from passgate import cose, generate_private_key, issue_pass, key_id, wire
from passgate.cose import PrivateKey
from passgate.keys import public_pem

from . import audit, credentials, denylists
from .keys import held_key, seal_for
from .models import (
    Alert,
    DenyEntry,
    DenyList,
    EntryMinute,
    Event,
    Gate,
    IssuedPass,
    IssuerKey,
    PassageTotal,
    Venue,
    Zone,
)
from .retention import RETENTION_DAYS, WINDOW_HOURS


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class Invalid(ValueError):
    """Input the hub refuses whatever its state (a gate setting out of bounds, a malformed id)."""


def create_venue(db: Session, name: str, *, offline: bool = False,
                 denylist_public_pem: str | None = None) -> Venue:
    """A venue with its deny-list signing key and empty revoked/blocked lists (version 0).

    ``offline``: an offline-issuer venue (see ``offline``): the hub holds only the public half of
    its deny-list key, ``denylist_public_pem``, and never a private key of the venue."""
    if offline != (denylist_public_pem is not None):
        raise Invalid("an offline-issuer venue needs its deny-list public key, and only it does")
    if db.scalar(select(Venue).where(Venue.name == name)):
        raise Conflict(f"venue {name!r} exists")
    key = _public_key(denylist_public_pem) if denylist_public_pem is not None else generate_private_key()
    venue = Venue(name=name, keys_rev=0, created_at=time.time(), offline=offline)
    db.add(venue)
    db.flush()
    _add_key(db, venue, key, purpose="denylist", issuer=f"{name} deny lists")
    db.add_all(DenyList(venue_id=venue.id, kind=kind, version=0, issued_at=0)
               for kind in denylists.KINDS)
    audit.record(db, "venue.create", name, venues=[venue])
    return venue


def get_venue(db: Session, name: str) -> Venue:
    venue = db.scalar(select(Venue).where(Venue.name == name))
    if venue is None:
        raise NotFound(f"no venue {name!r}")
    return venue


def list_venues(db: Session, only: Collection[int] | None = None) -> list[dict[str, Any]]:
    """Every venue, or ``only`` those (by id)."""
    query = select(Venue).order_by(Venue.name)
    if only is not None:
        query = query.where(Venue.id.in_(only))
    out = []
    for venue in db.scalars(query):
        zones = db.scalars(select(Zone.name).where(Zone.venue_id == venue.id).order_by(Zone.name))
        kid = db.scalar(select(IssuerKey.kid).where(IssuerKey.venue_id == venue.id,
                                                    IssuerKey.purpose == "denylist"))
        out.append({"name": venue.name, "zones": list(zones), "denylist_kid": kid,
                    "offline": venue.offline, "retention_days": venue.retention_days,
                    "window_hours": venue.window_hours, "timezone": venue.timezone})
    return out


def set_venue(db: Session, venue: Venue, *, retention_days: int | None = None,
              window_hours: int | None = None, timezone: str | None = None) -> dict[str, Any]:
    """Change how long the hub keeps the venue's events and alerts (``retention_days``) and their
    pass ids (``window_hours``; see ``retention``), and the venue's time zone (an IANA name such
    as "Europe/Berlin"); ``None`` leaves one as it is. Returns the venue as ``list_venues`` shows it."""
    for name, value, (low, high) in (("retention_days", retention_days, RETENTION_DAYS),
                                     ("window_hours", window_hours, WINDOW_HOURS)):
        if value is not None and (isinstance(value, bool) or not low <= value <= high):
            raise Invalid(f"{name} is from {low} to {high}, got {value}")
    if timezone is not None:
        venue.timezone = check_timezone(timezone)
    if retention_days is not None:
        venue.retention_days = retention_days
    if window_hours is not None:
        venue.window_hours = window_hours
    audit.record(db, "venue.set", venue.name, venues=[venue], retention_days=venue.retention_days,
                 window_hours=venue.window_hours, timezone=venue.timezone)
    db.flush()
    return next(v for v in list_venues(db) if v["name"] == venue.name)


def check_timezone(name: str) -> str:
    """An IANA time zone name this machine knows (``Invalid`` otherwise)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin or UTC)") from None
    return name


def create_zone(db: Session, venue: Venue, name: str) -> Zone:
    if db.scalar(select(Zone).where(Zone.venue_id == venue.id, Zone.name == name)):
        raise Conflict(f"zone {name!r} exists in {venue.name!r}")
    zone = Zone(venue_id=venue.id, name=name)
    db.add(zone)
    audit.record(db, "zone.create", f"{venue.name}/{name}", venues=[venue])
    return zone


def _zone_ids(db: Session, venue: Venue, names: Iterable[str]) -> list[int]:
    """The ids of zones of the venue; a name the venue lacks is refused, listing the ones it has
    (a pass or gate for a misspelt zone would otherwise be issued and never admitted)."""
    known = {name: zone_id for name, zone_id in
             db.execute(select(Zone.name, Zone.id).where(Zone.venue_id == venue.id))}
    names = list(names)
    for name in names:
        if name not in known:
            has = f"its zones: {', '.join(sorted(known))}" if known else "it has no zones yet"
            raise NotFound(f"no zone {name!r} in {venue.name!r} ({has})")
    return [known[name] for name in names]


# The settings the hub manages for a gate (``Gate.config``); a gate's zones are its zone on the hub.
GATE_SETTINGS = tuple(f.name for f in dataclasses.fields(wire.GateSettings) if f.name != "zones")


def gate_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as ``Gate.config`` holds them: checked by ``wire.GateSettings`` (the bounds the gate
    enforces too), only those given; ``None`` is not given."""
    unknown = sorted(set(given) - set(GATE_SETTINGS))
    if unknown:
        raise Invalid(f"settings.{unknown[0]}: not a gate setting (the settings are "
                      f"{', '.join(GATE_SETTINGS)}; a gate's zone is given as its zone)")
    try:
        parsed = wire.parse(wire.GateSettings, {k: v for k, v in given.items() if v is not None},
                            where="settings")
    except wire.ProtocolError as exc:
        raise Invalid(str(exc)) from None
    settings: dict[str, Any] = wire.dump(parsed.given())
    return settings


def create_gate(db: Session, venue: Venue, gate_id: str, zone: str | None = None,
                settings: Mapping[str, Any] | None = None) -> str:
    """Register a gate with the settings the hub manages for it; returns its token (shown once:
    the hub keeps only the hash)."""
    existing = db.scalar(select(Gate).where(Gate.gate_id == gate_id))
    if existing is not None:
        raise Conflict(f"gate {gate_id!r} exists" if existing.deleted_at is None else
                       f"gate {gate_id!r} was deleted; its events keep the id, so choose another")
    config = gate_settings(settings or {})
    zone_id = _zone_ids(db, venue, [zone])[0] if zone is not None else None
    token, digest = credentials.new_secret(credentials.GATE_PREFIX)
    db.add(Gate(gate_id=gate_id, venue_id=venue.id, zone_id=zone_id, token_hash=digest,
                config=config, created_at=time.time()))
    audit.record(db, "gate.create", f"{venue.name}/{gate_id}", venues=[venue], zone=zone, settings=config)
    return token


ENROLL_S = 24 * 3600.0  # an enrollment code works this long, once
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base 32: no I, L, O, U to misread


def _normal_code(code: str) -> str:
    return code.upper().translate(str.maketrans("OIL", "011", "- "))


def enrollment_code(db: Session, venue: Venue, gate_id: str, *,
                    now: float | None = None) -> tuple[str, float]:
    """A one-time code the gate exchanges for a new token (``passgated enroll``): returned once,
    kept as its hash; it works for ``ENROLL_S`` and replaces any code given before. The gate's
    current token keeps working until the code is used."""
    gate = get_gate(db, venue, gate_id)
    now = time.time() if now is None else now
    code = "".join(_CODE_ALPHABET[b % 32] for b in os.urandom(15))  # 75 bits
    gate.enroll_hash, gate.enroll_expires_at = credentials.hash_secret(_normal_code(code)), now + ENROLL_S
    audit.record(db, "gate.enroll_code", f"{venue.name}/{gate_id}", venues=[venue],
                 expires_at=now + ENROLL_S)
    return "-".join(code[i:i + 5] for i in range(0, 15, 5)), now + ENROLL_S


def enroll(db: Session, code: str, *, now: float | None = None) -> tuple[Gate, str, str]:
    """Exchange an enrollment code for the gate's new token: ``(gate, venue name, token)``. The
    code is used up; the gate's previous token is refused from the commit on. ``NotFound`` for a
    code that is wrong, used or expired (all alike); ``Conflict`` for a disabled gate."""
    now = time.time() if now is None else now
    gate = db.scalar(select(Gate).where(Gate.enroll_hash == credentials.hash_secret(_normal_code(code)),
                                        Gate.deleted_at.is_(None)).with_for_update())
    if gate is None or gate.enroll_expires_at is None or gate.enroll_expires_at <= now:
        raise NotFound("no such enrollment code (wrong, used or expired: ask for a new one)")
    venue = db.get(Venue, gate.venue_id)
    assert venue is not None
    if gate.disabled_at is not None:
        raise Conflict(f"gate {gate.gate_id!r} is disabled: an operator must enable it first")
    token, gate.token_hash = credentials.new_secret(credentials.GATE_PREFIX)
    gate.token_changed_at, gate.enroll_hash, gate.enroll_expires_at = now, None, None
    audit.record(db, "gate.enroll", f"{venue.name}/{gate.gate_id}", venues=[venue])
    return gate, venue.name, token


def get_gate(db: Session, venue: Venue, gate_id: str) -> Gate:
    """A gate of the venue that is not deleted."""
    gate = db.scalar(select(Gate).where(Gate.venue_id == venue.id, Gate.gate_id == gate_id,
                                        Gate.deleted_at.is_(None)))
    if gate is None:
        raise NotFound(f"no gate {gate_id!r} in {venue.name!r}")
    return gate


def set_gate(db: Session, venue: Venue, gate_id: str, *, zone: str | None = None,
             settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Change a gate's zone and settings (merged into those held; ``None`` unsets one, so the
    gate's own file rules again); the gate picks them up with its next bundle. Returns the gate
    as ``list_gates`` shows it."""
    gate = get_gate(db, venue, gate_id)
    # a config stored before settings were checked may hold other keys: those are dropped
    held = {k: v for k, v in gate.config.items() if k in GATE_SETTINGS}
    gate.config = gate_settings({**held, **(settings or {})})
    if zone is not None:
        gate.zone_id = _zone_ids(db, venue, [zone])[0]
    audit.record(db, "gate.set", f"{venue.name}/{gate_id}", venues=[venue], zone=zone,
                 settings=dict(settings or {}))
    return _gate_out(db, venue, gate_id)


def rotate_gate_token(db: Session, venue: Venue, gate_id: str) -> str:
    """A new token for the gate (returned once; also after a revocation); the old one is refused
    from the commit on."""
    gate = get_gate(db, venue, gate_id)
    token, gate.token_hash = credentials.new_secret(credentials.GATE_PREFIX)
    gate.token_changed_at = time.time()
    audit.record(db, "gate.token_rotate", f"{venue.name}/{gate_id}", venues=[venue])
    return token


def revoke_gate_token(db: Session, venue: Venue, gate_id: str) -> dict[str, Any]:
    """The gate's token is refused from the commit on (401); ``rotate_gate_token`` gives a new one."""
    gate = get_gate(db, venue, gate_id)
    if gate.token_hash is None:
        raise Conflict(f"gate {gate_id!r} has no token (revoked already)")
    gate.token_hash, gate.token_changed_at = None, time.time()
    audit.record(db, "gate.token_revoke", f"{venue.name}/{gate_id}", venues=[venue])
    return _gate_out(db, venue, gate_id)


def disable_gate(db: Session, venue: Venue, gate_id: str, *, disabled: bool = True) -> dict[str, Any]:
    """Refuse the gate's token with 403 "gate disabled" (``disabled=False``: accept it again);
    nothing is deleted."""
    gate = get_gate(db, venue, gate_id)
    if (gate.disabled_at is not None) == disabled:
        raise Conflict(f"gate {gate_id!r} is {'disabled' if disabled else 'enabled'} already")
    gate.disabled_at = time.time() if disabled else None
    audit.record(db, "gate.disable" if disabled else "gate.enable", f"{venue.name}/{gate_id}", venues=[venue])
    return _gate_out(db, venue, gate_id)


def delete_gate(db: Session, venue: Venue, gate_id: str) -> None:
    """Take a gate off the hub for good: its token is void, it leaves every list, its settings and
    health go. Its events stay (counts, alerts and other gates' redemptions stay right), and so a
    tombstone with its id and zone: the id is not given out again."""
    gate = get_gate(db, venue, gate_id)
    gate.deleted_at = gate.token_changed_at = time.time()
    gate.token_hash, gate.config, gate.health = None, {}, None
    audit.record(db, "gate.delete", f"{venue.name}/{gate_id}", venues=[venue])


def _gate_out(db: Session, venue: Venue, gate_id: str) -> dict[str, Any]:
    return next(g for g in list_gates(db, venue) if g["gate_id"] == gate_id)


def _add_key(db: Session, venue: Venue, key: Any, *, purpose: str, issuer: str | None) -> IssuerKey:
    """``key``: a private key (the hub signs with it; stored sealed) or a public one (trusted only)."""
    kid = key_id(key).hex()
    if hasattr(key, "private_bytes") and venue.offline:
        raise Conflict(f"{venue.name!r} is an offline-issuer venue: the hub holds no private key of "
                       "it (sign with passgate where the key lives; give the hub the public key)")
    if db.scalar(select(IssuerKey).where(IssuerKey.venue_id == venue.id, IssuerKey.kid == kid)):
        raise Conflict(f"key {kid} is already held for {venue.name!r}")
    sealed = seal_for(db, kid, key) if hasattr(key, "private_bytes") else None
    row = IssuerKey(venue_id=venue.id, kid=kid, purpose=purpose, issuer=issuer,
                    public_pem=public_pem(key).decode(), private_sealed=sealed, created_at=time.time())
    db.add(row)
    venue.keys_rev += 1
    audit.record(db, "key.add", f"{venue.name}/{kid}", venues=[venue], purpose=purpose,
                 hub_held=sealed is not None)
    return row


def _public_key(text: str) -> Any:
    """A PEM Ed25519 or P-256 public key, or ``Conflict``."""
    try:
        key = serialization.load_pem_public_key(text.encode())
        key_id(key)  # type: ignore[arg-type]
        cose.algorithm_for(key)  # type: ignore[arg-type]
    except (ValueError, TypeError, cose.CoseError):
        raise Conflict("not a PEM Ed25519 or P-256 public key") from None
    return key


def add_key(db: Session, venue: Venue, *, public_pem_text: str | None = None, generate: bool = False,
            alg: str = "ed25519", issuer: str | None = None) -> IssuerKey:
    """Trust a pass issuer's public key, or generate one the hub issues with."""
    if generate == (public_pem_text is not None):
        raise Conflict("give either a public key or generate=true")
    key: Any = generate_private_key(alg) if generate else _public_key(public_pem_text)  # type: ignore[arg-type]
    return _add_key(db, venue, key, purpose="passes", issuer=issuer)


def list_keys(db: Session, venue: Venue) -> list[IssuerKey]:
    return list(db.scalars(select(IssuerKey).where(IssuerKey.venue_id == venue.id)
                           .order_by(IssuerKey.id)))


def get_key(db: Session, venue: Venue, kid: str) -> IssuerKey:
    row = db.scalar(select(IssuerKey).where(IssuerKey.venue_id == venue.id, IssuerKey.kid == kid))
    if row is None:
        raise NotFound(f"no key {kid!r} in {venue.name!r} (see key list)")
    return row


def _pass_key(db: Session, venue: Venue, kid: str, action: str) -> IssuerKey:
    """A pass key that is not revoked: the one kind of key an operator retires or revokes (the
    deny-list key signs every list the gates hold; it is not taken away from under them)."""
    row = get_key(db, venue, kid)
    if row.purpose != wire.KeyPurpose.PASSES:
        raise Conflict(f"key {kid} signs {venue.name!r}'s deny lists; only pass keys are {action}")
    if row.revoked_at is not None:
        raise Conflict(f"key {kid} is already revoked")
    return row


def retire_key(db: Session, venue: Venue, kid: str, *, at: float | None = None) -> IssuerKey:
    """Stop trusting passes a key issues from ``at`` (default now) on; the ones issued before stay
    valid. The hub never issues with it again."""
    row = _pass_key(db, venue, kid, "retired")
    if row.retired_at is not None:
        raise Conflict(f"key {kid} is already retired (since {row.retired_at})")
    row.retired_at = time.time() if at is None else at
    venue.keys_rev += 1  # a new bundle: gates follow within one sync
    audit.record(db, "key.retire", f"{venue.name}/{kid}", venues=[venue], at=row.retired_at)
    return row


def revoke_key(db: Session, venue: Venue, kid: str) -> IssuerKey:
    """The key leaked: gates refuse every pass under it, whenever it says it was issued."""
    row = _pass_key(db, venue, kid, "revoked")
    row.revoked_at = time.time()
    venue.keys_rev += 1
    audit.record(db, "key.revoke", f"{venue.name}/{kid}", venues=[venue])
    return row


def rotate_key(db: Session, venue: Venue, *, alg: str = "ed25519") -> tuple[IssuerKey, list[str]]:
    """A new hub-held pass key; the hub-held ones in use are retired now (their passes stay
    valid). Returns the new key and the kids retired."""
    if venue.offline:
        raise Conflict(f"{venue.name!r} is an offline-issuer venue: rotate its keys where they live "
                       "(passgate keygen, then key add and key retire)")
    now = time.time()
    old = list(db.scalars(select(IssuerKey).where(
        IssuerKey.venue_id == venue.id, IssuerKey.purpose == wire.KeyPurpose.PASSES,
        IssuerKey.private_sealed.is_not(None), IssuerKey.retired_at.is_(None),
        IssuerKey.revoked_at.is_(None))))
    issuer = old[-1].issuer if old else None
    try:
        key = generate_private_key(alg)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    row = _add_key(db, venue, key, purpose=wire.KeyPurpose.PASSES, issuer=issuer)
    for previous in old:
        previous.retired_at = now
    retired = [previous.kid for previous in old]
    audit.record(db, "key.rotate", f"{venue.name}/{row.kid}", venues=[venue], retired=retired)
    return row, retired


def export_key(db: Session, venue: Venue, kid: str) -> str:
    """The public PEM of any key of the venue (a pass key or the deny-list key), for gates fed by
    hand or for an issuer's partners."""
    return get_key(db, venue, kid).public_pem


def issuing_key(db: Session, venue: Venue) -> PrivateKey:
    """The venue's newest hub-held pass key (``keys.held_key``), or why the hub cannot issue."""
    key = held_key(db, venue, "passes")
    if key is None and venue.offline:
        raise Conflict(f"{venue.name!r} is an offline-issuer venue: sign passes with 'passgate issue' "
                       "where the key lives, then record them on the hub (pass record)")
    if key is None:
        raise NotFound(f"venue {venue.name!r} has no hub-held issuer key (generate one first)")
    return key


def check_zones(db: Session, venue: Venue, zones: Iterable[str]) -> list[str]:
    """The zone names, each one the venue has (``NotFound`` naming those it has otherwise)."""
    names = list(zones)
    _zone_ids(db, venue, names)
    return names


def issue(db: Session, venue: Venue, *, count: int, valid_from: float, valid_until: float,
          zones: Iterable[str] = (), entries: int | None = None, product: str | None = None,
          reentry: bool = False, record: bool = True) -> tuple[str, list[tuple[str, str]]]:
    """Sign ``count`` passes with the venue's newest hub-held issuer key: ``(kid, [(id, text)])``.
    (Holder-bound passes are issued by ``claims.issue_bound``: signed when claimed.)"""
    key = issuing_key(db, venue)
    kid = key_id(key).hex()
    zones = check_zones(db, venue, zones)
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
    audit.record(db, "passes.issue", venue.name, venues=[venue], kid=kid, count=count, zones=zones,
                 valid_from=valid_from, valid_until=valid_until, recorded=record)
    return kid, out


def deny(db: Session, venue: Venue, kind: str, pass_ids: Iterable[str], *, remove: bool = False,
         external: bool = False, reason: str | None = None) -> tuple[int, int]:
    """Put pass ids on the venue's ``kind`` list, or take them off (``remove``): ``(version,
    entries changed)``. The ids must be passes the hub issued for the venue unless ``external``
    (signed by another issuer the venue trusts): a mistyped id would be listed silently while the
    pass it meant stays valid."""
    ids = list(dict.fromkeys(i.strip().lower() for i in pass_ids))
    if not ids:
        raise Invalid("no pass ids given")
    bad = [i for i in ids if not re.fullmatch(wire.HEX_ID, i)]
    if bad:
        raise Invalid(f"not a pass id: {bad[0]!r} (give 32 hex characters)")
    if not external:
        issued = set(db.scalars(select(IssuedPass.pass_id).where(IssuedPass.venue_id == venue.id,
                                                                 IssuedPass.pass_id.in_(ids))))
        unknown = [i for i in ids if i not in issued]
        if unknown:
            raise NotFound(f"{len(unknown)} of {len(ids)} pass ids were not issued by this hub for "
                           f"{venue.name!r} (first: {unknown[0]}); mark them external if another "
                           "issuer signed them")
    adds, removes = ([], ids) if remove else (ids, [])
    version, changed = denylists.change(db, venue, kind, adds=adds, removes=removes, reason=reason)
    # the ids themselves are in the list's entries, under this version
    audit.record(db, f"{kind}.{'remove' if remove else 'add'}", venue.name, venues=[venue],
                 version=version, changed=changed, external=external, reason=reason)
    return version, changed


def pass_record(db: Session, venue: Venue, pass_id: str) -> dict[str, Any]:
    """What the hub knows of one pass at a venue: its record (if the hub issued it), which deny
    lists hold it and why, and its events at every gate (oldest first)."""
    pass_id = pass_id.strip().lower()
    if not re.fullmatch(wire.HEX_ID, pass_id):
        raise Invalid(f"not a pass id: {pass_id[:40]!r} (give 32 hex characters)")
    issued = db.scalar(select(IssuedPass).where(IssuedPass.pass_id == pass_id,
                                                IssuedPass.venue_id == venue.id))
    listed = db.execute(select(DenyEntry.kind, DenyEntry.reason, DenyEntry.version_added)
                        .where(DenyEntry.venue_id == venue.id, DenyEntry.pass_id == pass_id,
                               DenyEntry.version_removed.is_(None))).all()
    return {"pass_id": pass_id,
            "issued": None if issued is None else {
                "product": issued.product, "zones": issued.zones, "entries": issued.entries,
                "valid_from": issued.valid_from, "valid_until": issued.valid_until,
                "issued_at": issued.issued_at},
            "lists": [{"kind": kind, "reason": reason, "version": version}
                      for kind, reason, version in listed],
            "events": query_events(db, venue, pass_id=pass_id, limit=1000)}


def list_gates(db: Session, venue: Venue | None = None, *, only: Collection[int] | None = None,
               now: float | None = None, with_health: bool = False) -> list[dict[str, Any]]:
    """Gates (not deleted; of ``venue``, or of the venues ``only`` names by id) with what their
    last heartbeat said: backlog, version, list ages (aged to now); ``with_health`` adds the
    heartbeat's ``health`` (fault, scanners, stale lists: the console's fleet page)."""
    now = time.time() if now is None else now
    # columns, not Gate objects: the fleet page reads a thousand gates, and the ORM's objects
    # (identity map, attribute state) cost as much as the rows themselves
    query = (select(Gate.gate_id, Gate.health, Gate.last_seen, Gate.clock_offset_s, Gate.protocol,
                    Gate.config, Gate.disabled_at, Gate.token_hash.is_not(None).label("has_token"),
                    Gate.token_changed_at, Venue.name.label("venue_name"), Zone.name.label("zone_name"))
             .join(Venue, Gate.venue_id == Venue.id)
             .outerjoin(Zone, Gate.zone_id == Zone.id).where(Gate.deleted_at.is_(None))
             .order_by(Gate.gate_id))
    if venue is not None:
        query = query.where(Gate.venue_id == venue.id)
    if only is not None:
        query = query.where(Gate.venue_id.in_(only))
    out = []
    for gate in db.execute(query):
        health = gate.health or {}
        since = now - gate.last_seen if gate.last_seen is not None else 0.0
        lists = {kind: {"version": info.get("version"),
                        "age_s": info["age_s"] + since if info.get("age_s") is not None else None}
                 for kind, info in (health.get("lists") or {}).items()}
        out.append({"gate_id": gate.gate_id, "venue": gate.venue_name, "zone": gate.zone_name,
                    "last_seen": gate.last_seen, "backlog": health.get("backlog"),
                    "version": health.get("version"), "lists": lists, "clock_skew_s": gate.clock_offset_s,
                    "protocol": gate.protocol, "state": health.get("state"),
                    "settings": gate.config, "disabled_at": gate.disabled_at,
                    "has_token": gate.has_token, "token_changed_at": gate.token_changed_at})
        if with_health:
            out[-1]["health"] = health.get("health") if isinstance(health.get("health"), dict) else {}
    return out


def query_events(db: Session, venue: Venue, *, gate_id: str | None = None, kind: str | None = None,
                 after: int = 0, since: float | None = None, until: float | None = None,
                 limit: int = 1000, zone: str | None = None, pass_id: str | None = None,
                 reason: str | None = None, by_time: bool = False, after_t: float | None = None,
                 ) -> list[Event]:
    """Events of a venue in hub order (``seq``), filtered; page with ``after`` = last seq.
    ``since`` and ``until`` bound the gate's time ``t``; ``zone``: events of the zone's gates.

    ``by_time``: in the gate's time order instead (``t``, then ``seq``), paged with ``after_t``
    and ``after``, the last row's ``t`` and ``seq``. What a time filter wants: the events of an
    hour are a range of the ``events_venue_t`` index, where in hub order a filter "since midnight"
    read every older event first (seconds at 10 M events)."""
    query = select(Event).where(Event.venue_id == venue.id)
    if not by_time:
        query = query.where(Event.seq > after)
    elif after_t is not None:
        query = query.where(tuple_(Event.t, Event.seq) > tuple_(after_t, after))
    if gate_id is not None:
        query = query.where(Event.gate_id == gate_id)
    if zone is not None:
        query = query.where(Event.gate_id.in_(select(Gate.gate_id).join(Zone, Gate.zone_id == Zone.id)
                                              .where(Zone.venue_id == venue.id, Zone.name == zone)))
    if pass_id is not None:
        query = query.where(Event.pass_id == pass_id)
    if reason is not None:
        query = query.where(Event.reason == reason)
    if kind is not None:
        query = query.where(Event.kind == kind)
    if since is not None:
        query = query.where(Event.t >= since)
    if until is not None:
        query = query.where(Event.t < until)
    order = (Event.t, Event.seq) if by_time else (Event.seq,)
    return list(db.scalars(query.order_by(*order).limit(limit)))


def zone_counts(db: Session, venue: Venue) -> list[dict[str, Any]]:
    """Live counts per zone: passages in and out through the zone's gates; inside = in − out.
    A scanned passage is its redemption; a passage without a scan has a detail saying which (a
    protocol-1 gate also sent a detail-less ``passage`` for each redemption: not counted). Read
    from the totals ingest keeps per gate (``PassageTotal``), which include the passages of
    events the retention purge deleted: a few rows a gate, whatever the number of events."""
    rows = db.execute(
        select(Zone.name, PassageTotal.direction, func.sum(PassageTotal.passages))
        .select_from(Zone)
        .outerjoin(Gate, Gate.zone_id == Zone.id)
        .outerjoin(PassageTotal, (PassageTotal.gate_id == Gate.gate_id) & (PassageTotal.venue_id == venue.id))
        .where(Zone.venue_id == venue.id)
        .group_by(Zone.name, PassageTotal.direction).order_by(Zone.name))
    counts: dict[str, list[int]] = {}
    for name, direction, n in rows:
        held = counts.setdefault(name, [0, 0])
        if direction is not None:
            held[0 if direction == str(wire.Direction.ENTRY) else 1] += int(n)
    return [{"zone": name, "entries": e, "exits": x, "inside": e - x} for name, (e, x) in counts.items()]


def entries_per_minute(db: Session, venue: Venue, start: float, end: float) -> list[int]:
    """Passages in (the rule of ``zone_counts``) at the venue's gates in each minute from ``start``
    to ``end`` (whole minutes: a venue's midnight is one in every time zone in use), by hub time.
    Read from the counts ingest keeps per minute (``EntryMinute``): at most 1440 ×
    ``ENTRY_SHARDS`` rows a day, whatever the number of events."""
    first = math.floor(start / 60)
    out = [0] * max(1, math.ceil((end - start) / 60))
    rows = db.execute(select(EntryMinute.minute, func.sum(EntryMinute.entries))
                      .where(EntryMinute.venue_id == venue.id, EntryMinute.minute >= first,
                             EntryMinute.minute < first + len(out))
                      .group_by(EntryMinute.minute))
    for minute, n in rows:
        out[minute - first] = int(n)
    return out


def list_alerts(db: Session, venue: Venue, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """The venue's alerts, oldest first; page with ``after`` = the last ``id``."""
    rows = db.scalars(select(Alert).where(Alert.venue_id == venue.id, Alert.id > after)
                      .order_by(Alert.id).limit(limit))
    return [{"id": a.id, "kind": a.kind, "venue": venue.name, "pass_id": a.pass_id,
             "event_id": a.event_id, "entries": a.entries, "redemptions": a.redemptions,
             "gates": [r["gate_id"] for r in a.redemptions], "apart_s": a.apart_s,
             "created_at": a.created_at} for a in rows]
