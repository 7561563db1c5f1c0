"""Gate tokens and admin API keys: random, shown once, stored as SHA-256 hex.

The prefix says which kind a bearer credential claims to be, so a valid credential of the wrong
kind is told apart from a bad one: 401 for missing or unknown, 403 for the wrong scope.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Annotated, NamedTuple, TypeVar

from fastapi import Depends, HTTPException, Request
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .models import ApiKey, Gate

GATE_PREFIX = "pgg_"
ADMIN_PREFIX = "pga_"


def new_secret(prefix: str) -> tuple[str, str]:
    """A fresh credential and the hash to store: ``(secret, sha256_hex)``."""
    secret = prefix + secrets.token_urlsafe(32)
    return secret, hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def db_session(*, request: Request):  # type: ignore[no-untyped-def]
    """One session per request, closed (rolled back unless committed) when the request ends."""
    with request.app.state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(db_session)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return credential.strip()


def _lookup_gate(db: Session, secret: str) -> Gate | None:
    digest = hash_secret(secret)
    gate = db.scalar(_GATE_BY_TOKEN, {"digest": digest})
    return gate if gate is not None and hmac.compare_digest(gate.token_hash, digest) else None


class GateRef(NamedTuple):
    """What an event upload needs of its gate: read as plain columns, without an ORM object (the
    upload is the hub's busiest route)."""

    gate_id: str
    venue_id: int
    clock_offset_s: float | None
    last_seen: float | None
    token_hash: str


# Built once: building a statement costs more than running it.
_GATE_BY_TOKEN = select(Gate).where(Gate.token_hash == bindparam("digest"))
_GATE_REF_BY_TOKEN = (select(*(Gate.__table__.c[name] for name in GateRef._fields))
                      .where(Gate.token_hash == bindparam("digest")))


def _lookup_gate_ref(db: Session, secret: str) -> GateRef | None:
    digest = hash_secret(secret)
    row = db.connection().execute(_GATE_REF_BY_TOKEN, {"digest": digest}).first()
    return GateRef(*row) if row is not None and hmac.compare_digest(row.token_hash, digest) else None


def _lookup_key(db: Session, secret: str) -> ApiKey | None:
    digest = hash_secret(secret)
    key = db.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    return key if key is not None and hmac.compare_digest(key.key_hash, digest) else None


def _unknown() -> HTTPException:
    return HTTPException(401, "unknown or revoked credential", headers={"WWW-Authenticate": "Bearer"})


G = TypeVar("G", Gate, GateRef)


def _gate(request: Request, db: Session, gate_id: str, lookup: Callable[[Session, str], G | None]) -> G:
    secret = _bearer(request)
    if secret.startswith(ADMIN_PREFIX):
        if _lookup_key(db, secret) is None:
            raise _unknown()
        raise HTTPException(403, "an admin API key cannot act as a gate")
    gate = lookup(db, secret)
    if gate is None:
        raise _unknown()
    if gate.gate_id != gate_id:
        raise HTTPException(403, "this token belongs to another gate")
    return gate


def current_gate(*, gate_id: str, request: Request, db: DB) -> Gate:
    """The gate the token belongs to; 403 unless it is the gate named in the path."""
    return _gate(request, db, gate_id, _lookup_gate)


def uploading_gate(request: Request, db: Session, gate_id: str) -> GateRef:
    """``current_gate``, as the columns an event upload needs."""
    return _gate(request, db, gate_id, _lookup_gate_ref)


def current_admin(*, request: Request, db: DB) -> ApiKey:
    """The admin API key presented; 403 for a (valid) gate token."""
    secret = _bearer(request)
    if secret.startswith(GATE_PREFIX):
        if _lookup_gate(db, secret) is None:
            raise _unknown()
        raise HTTPException(403, "a gate token cannot use the admin API")
    key = _lookup_key(db, secret)
    if key is None:
        raise _unknown()
    return key


CurrentGate = Annotated[Gate, Depends(current_gate)]
