"""Operator accounts: the people who sign in to the console.

An operator is a principal with grants (``scope``), as an API key is, plus an argon2 password hash
and a TOTP second factor whose secret is sealed with the hub's sealing key (``sealing``): a copy of
the database holds neither a password nor a second factor that works. Signing in needs the name,
the password and a fresh code; a code works once (``Operator.totp_step``). ``MAX_FAILURES`` wrong
tries in a row lock the account for ``LOCKOUT_S``, whatever is tried meanwhile. Every sign-in,
failure and lock goes to the audit log. Each function works in the caller's session and leaves
the commit to it (a refused sign-in's counts are committed by the caller too).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import ARGON2_VERSION
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, keys, sealing
from .models import ConsoleSession, Grant, Operator, Principal, Venue
from .ops import Conflict, Invalid, NotFound, get_venue
from .scope import Forbidden, Role, Scope

PRINCIPAL_KIND = "operator"
MAX_FAILURES = 5
LOCKOUT_S = 15 * 60.0
MIN_PASSWORD = 12
ISSUER = "passgate hub"  # what an authenticator app shows beside the account
_HASHER = PasswordHasher()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


# Checked when the name is unknown, so a wrong name takes as long as a wrong password: an encoded
# hash with _HASHER's parameters (checking costs what they say) and a random salt and digest that
# no password gives. Written out rather than hashed: a hash here cost every import of this module
# (every passgate-hub command) a quarter of a second.
_DUMMY_HASH = (f"$argon2{_HASHER.type.name.lower()}$v={ARGON2_VERSION}$m={_HASHER.memory_cost},"
               f"t={_HASHER.time_cost},p={_HASHER.parallelism}"
               f"${_b64(secrets.token_bytes(_HASHER.salt_len))}${_b64(secrets.token_bytes(_HASHER.hash_len))}")


class SignInRefused(Exception):
    """Why a sign-in failed, in words the person may see (never which part was wrong)."""


@dataclass(frozen=True)
class Created:
    name: str
    password: str | None  # when the hub chose it (shown once)
    totp_uri: str  # for the authenticator app (shown once; a QR of it in the console)


def create(db: Session, name: str, *, role: Role, venues: Sequence[str] = (), all_venues: bool = False,
           password: str | None = None, by: Scope) -> Created:
    """A new operator with ``role`` on each of ``venues`` (or every venue), a password (chosen
    here when not given) and a new TOTP secret; both are returned once."""
    if all_venues == bool(venues):
        raise Invalid("name the operator's venues (--venue) or give --all-venues, one of the two")
    if all_venues:
        by.check_hub_wide(Role.ADMIN)
    for venue in venues:
        by.check(venue, Role.ADMIN)
    if password is not None and len(password) < MIN_PASSWORD:
        raise Invalid(f"a password has at least {MIN_PASSWORD} characters")
    targets: list[Venue | None] = [None] if all_venues else [get_venue(db, v) for v in dict.fromkeys(venues)]
    if db.scalar(select(Operator.id).where(Operator.name == name)) is not None:
        raise Conflict(f"operator {name!r} exists")
    chosen = password is None
    password = secrets.token_urlsafe(12) if password is None else password
    totp = pyotp.random_base32()
    now = time.time()
    principal = Principal(kind=PRINCIPAL_KIND, created_at=now)
    db.add(principal)
    db.flush()
    db.add(Operator(name=name, principal_id=principal.id, password_hash=_HASHER.hash(password),
                    totp_sealed=sealing.seal_secret(keys.sealing_kek(db), name, totp.encode()),
                    failures=0, created_at=now))
    db.add_all(Grant(principal_id=principal.id, venue_id=v.id if v is not None else None, role=role)
               for v in targets)
    audit.record(db, "operator.create", name, venues=targets, role=str(role))
    return Created(name, password if chosen else None,
                   pyotp.TOTP(totp).provisioning_uri(name=name, issuer_name=ISSUER))


def _grants(db: Session, person: Operator) -> list[tuple[str | None, Role]]:
    rows = db.execute(select(Venue.name, Grant.role).outerjoin(Venue, Venue.id == Grant.venue_id)
                      .where(Grant.principal_id == person.principal_id))
    return sorted(((name, Role(role)) for name, role in rows), key=lambda g: (g[0] is not None, g[0] or ""))


def describe(db: Session, person: Operator) -> dict[str, Any]:
    """An operator as listed: never a password hash or a second factor."""
    return {"name": person.name, "grants": [{"venue": v, "role": str(r)} for v, r in _grants(db, person)],
            "created_at": person.created_at, "last_login_at": person.last_login_at,
            "locked_until": person.locked_until, "disabled_at": person.disabled_at}


def list_operators(db: Session, *, by: Scope) -> list[dict[str, Any]]:
    people = db.scalars(select(Operator).order_by(Operator.name))
    return [describe(db, p) for p in people if by.covers_all([v for v, _ in _grants(db, p)], Role.ADMIN)]


def _get(db: Session, name: str, by: Scope) -> tuple[Operator, list[Venue | None]]:
    person = db.scalar(select(Operator).where(Operator.name == name))
    if person is None:
        raise NotFound(f"no operator {name!r}")
    grants = _grants(db, person)
    if not by.covers_all([v for v, _ in grants], Role.ADMIN):
        raise Forbidden(f"operator {name!r} reaches venues this credential does not administer "
                        f"(it holds: {by.describe()})")
    return person, [get_venue(db, v) if v is not None else None for v, _ in grants]


def unlock(db: Session, name: str, *, by: Scope) -> dict[str, Any]:
    """End a lock-out now (an admin who knows it is the operator trying)."""
    person, venues = _get(db, name, by)
    person.failures, person.locked_until = 0, None
    audit.record(db, "operator.unlock", name, venues=venues)
    return describe(db, person)


def set_disabled(db: Session, name: str, disabled: bool, *, by: Scope) -> dict[str, Any]:
    """Disable (signs out every session of it at once) or enable an operator."""
    person, venues = _get(db, name, by)
    person.disabled_at = time.time() if disabled else None
    audit.record(db, "operator.disable" if disabled else "operator.enable", name, venues=venues)
    return describe(db, person)


def delete(db: Session, name: str, *, by: Scope) -> dict[str, Any]:
    """Forget an operator: the account, its grants, its sessions (the audit log keeps the name in
    what it did, until the log's own retention)."""
    person, venues = _get(db, name, by)
    db.execute(sa.delete(ConsoleSession).where(ConsoleSession.operator_id == person.id))
    db.execute(sa.delete(Grant).where(Grant.principal_id == person.principal_id))
    principal = person.principal_id
    db.delete(person)
    db.flush()
    db.execute(sa.delete(Principal).where(Principal.id == principal))
    audit.record(db, "operator.delete", name, venues=venues)
    return {"name": name, "deleted": True}


def sign_in(db: Session, name: str, password: str, code: str, *, now: float | None = None) -> Operator:
    """The operator whose name, password and current code these are; ``SignInRefused`` otherwise,
    with the failure counted (and recorded: the caller commits either way)."""
    now = time.time() if now is None else now
    person = db.scalar(select(Operator).where(Operator.name == name).with_for_update())
    if person is None:
        _verify(_DUMMY_HASH, password)
        audit.record(db, "console.sign_in_failed", name[:64], reason="unknown operator")
        raise SignInRefused("wrong name, password or code")
    venues = [get_venue(db, v) if v is not None else None for v, _ in _grants(db, person)] or [None]
    if person.disabled_at is not None:
        audit.record(db, "console.sign_in_failed", name, venues=venues, reason="disabled")
        raise SignInRefused("this operator is disabled: ask an admin")
    if person.locked_until is not None and person.locked_until > now:
        audit.record(db, "console.sign_in_failed", name, venues=venues, reason="locked")
        until = time.strftime("%H:%M", time.localtime(person.locked_until))
        raise SignInRefused(f"too many failed sign-ins: locked until {until} (or an admin unlocks it)")
    step = _fresh_step(db, person, code, now)
    if not _verify(person.password_hash, password) or step is None:
        person.failures += 1
        if person.failures >= MAX_FAILURES:
            person.failures, person.locked_until = 0, now + LOCKOUT_S
            audit.record(db, "console.locked", name, venues=venues, minutes=int(LOCKOUT_S // 60))
            raise SignInRefused(f"too many failed sign-ins: locked for {int(LOCKOUT_S // 60)} minutes")
        audit.record(db, "console.sign_in_failed", name, venues=venues, reason="wrong password or code")
        raise SignInRefused("wrong name, password or code")
    person.failures, person.locked_until, person.totp_step, person.last_login_at = 0, None, step, now
    if _HASHER.check_needs_rehash(person.password_hash):
        person.password_hash = _HASHER.hash(password)
    audit.record(db, "console.sign_in", name, venues=venues)
    return person


def _verify(digest: str, password: str) -> bool:
    try:
        return _HASHER.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


def _fresh_step(db: Session, person: Operator, code: str, now: float) -> int | None:
    """The time step whose code this is (this one, or one either side for clocks apart), if that
    step is newer than the last one used; else None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(sealing.open_secret(keys.kek_for(db), person.name, person.totp_sealed).decode())
    current = int(now // totp.interval)
    for step in (current, current - 1, current + 1):
        if secrets.compare_digest(totp.at(step * totp.interval), code):
            return step if person.totp_step is None or step > person.totp_step else None
    return None
