"""Gate tokens and admin API keys on requests (made and hashed in ``credentials``).

The prefix says which kind a bearer credential claims to be, so a valid credential of the wrong
kind is told apart from a bad one: 401 for missing, unknown or revoked, 403 for the wrong scope
(another gate, a disabled gate, a venue or role the key holds no grant for).

Every admin route declares what it needs with one dependency, ``require(role)``: on a route with
``{venue}`` in its path, that role on that venue; on one without, that role on some venue (the
route shows only those) or, ``hub_wide``, on every venue. Nothing is cached: a token revoked,
rotated or disabled is refused from the commit on, by every worker.
"""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, NamedTuple, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import audit, scope
from .credentials import ADMIN_PREFIX, GATE_PREFIX, hash_secret
from .models import ApiKey, Gate, Venue
from .scope import Role, Scope


def db_session(*, request: Request):  # type: ignore[no-untyped-def]
    """One session per request, closed (rolled back unless committed) when the request ends."""
    with request.app.state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(db_session)]


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return credential.strip()


def _lookup_gate(db: Session, secret: str) -> Gate | None:
    digest = hash_secret(secret)
    gate = db.scalar(_GATE_BY_TOKEN, {"digest": digest})
    return gate if gate is not None and hmac.compare_digest(gate.token_hash or "", digest) else None


class GateRef(NamedTuple):
    """What an event upload needs of its gate: read as plain columns, without an ORM object (the
    upload is the hub's busiest route)."""

    gate_id: str
    venue_id: int
    clock_offset_s: float | None
    last_seen: float | None
    token_hash: str
    disabled_at: float | None


class GateCard(NamedTuple):
    """What a sync round needs of its gate (``rounds``): plain columns a worker may keep a second
    and use from any thread, where an ORM object belongs to its session."""

    id: int
    gate_id: str
    venue_id: int
    zone_id: int | None
    config: dict[str, Any]
    token_hash: str
    disabled_at: float | None
    gates_rev: int  # the venue's, when this was read: kept only while it is still the venue's


# Built once: building a statement costs more than running it.
_GATE_BY_TOKEN = select(Gate).where(Gate.token_hash == bindparam("digest"))
_GATE_REF_BY_TOKEN = (select(*(Gate.__table__.c[name] for name in GateRef._fields))
                      .where(Gate.token_hash == bindparam("digest")))
_GATE_CARD_BY_TOKEN = (select(*(Gate.__table__.c[name] for name in GateCard._fields[:-1]), Venue.gates_rev)
                       .join(Venue, Venue.id == Gate.venue_id).where(Gate.token_hash == bindparam("digest")))


def _lookup_gate_ref(db: Session, secret: str) -> GateRef | None:
    digest = hash_secret(secret)
    row = db.connection().execute(_GATE_REF_BY_TOKEN, {"digest": digest}).first()
    return GateRef(*row) if row is not None and hmac.compare_digest(row.token_hash, digest) else None


def _lookup_gate_card(db: Session, secret: str) -> GateCard | None:
    digest = hash_secret(secret)
    row = db.connection().execute(_GATE_CARD_BY_TOKEN, {"digest": digest}).first()
    return GateCard._make(row) if row is not None and hmac.compare_digest(row.token_hash, digest) else None


def syncing_gate(request: Request, db: Session, gate_id: str) -> GateCard:
    """``current_gate``, as the columns a sync round needs (``rounds.Known`` keeps them)."""
    return _gate(request, db, gate_id, _lookup_gate_card)


def _lookup_key(db: Session, secret: str) -> ApiKey | None:
    digest = hash_secret(secret)
    key = db.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
    return key if key is not None and hmac.compare_digest(key.key_hash, digest) else None


def _unknown() -> HTTPException:
    return HTTPException(401, "unknown or revoked credential", headers={"WWW-Authenticate": "Bearer"})


G = TypeVar("G", Gate, GateRef, GateCard)


def _gate(request: Request, db: Session, gate_id: str, lookup: Callable[[Session, str], G | None]) -> G:
    secret = bearer(request)
    if secret.startswith(ADMIN_PREFIX):
        if _lookup_key(db, secret) is None:
            raise _unknown()
        raise HTTPException(403, "an admin API key cannot act as a gate")
    gate = lookup(db, secret)
    if gate is None:
        raise _unknown()
    if gate.gate_id != gate_id:
        raise HTTPException(403, "this token belongs to another gate")
    if gate.disabled_at is not None:
        raise HTTPException(403, f"gate disabled: {gate.gate_id!r} was disabled by an operator "
                                 "(gate enable brings it back)")
    return gate


def current_gate(*, gate_id: str, request: Request, db: DB) -> Gate:
    """The gate the token belongs to; 403 unless it is the gate named in the path."""
    return _gate(request, db, gate_id, _lookup_gate)


def uploading_gate(request: Request, db: Session, gate_id: str) -> GateRef:
    """``current_gate``, as the columns an event upload needs."""
    return _gate(request, db, gate_id, _lookup_gate_ref)


LAST_USED_RESOLUTION_S = 60.0  # a key's last use is written at most once a minute


def current_admin(*, request: Request, db: DB) -> ApiKey:
    """The admin API key presented; 403 for a (valid) gate token. Notes when the key was last
    used (to the minute: not a write on every request)."""
    secret = bearer(request)
    if secret.startswith(GATE_PREFIX):
        if _lookup_gate(db, secret) is None:
            raise _unknown()
        raise HTTPException(403, "a gate token cannot use the admin API")
    key = _lookup_key(db, secret)
    if key is None:
        raise _unknown()
    now = time.time()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION_S:
        key.last_used_at = now
        db.commit()
    return key


ACCESS = "x-passgate-access"  # an admin operation's requirement in the OpenAPI schema


class Requirement:
    """The dependency ``require`` makes: checks the key's grants for the route, sets the key as
    the actor of the request's changes, and gives the route the key's ``Scope`` (to filter by)."""

    def __init__(self, role: Role, hub_wide: bool) -> None:
        self.role, self.hub_wide = role, hub_wide

    def __call__(self, *, request: Request, db: DB, key: Annotated[ApiKey, Depends(current_admin)]) -> Scope:
        grants = scope.load(db, key.principal_id)
        venue = request.path_params.get("venue")
        try:
            if self.hub_wide:
                grants.check_hub_wide(self.role)
            elif venue is not None:
                grants.check(venue, self.role)
            else:
                grants.check_any(self.role)
        except scope.Forbidden as exc:
            raise HTTPException(403, f"API key {key.name!r}: {exc}") from None
        audit.act_as(db, audit.Actor(f"apikey:{key.name}", request.client.host if request.client else None))
        return grants

    def openapi(self) -> dict[str, Any]:
        return {"role": str(self.role), "hub_wide": self.hub_wide}


@functools.cache
def require(role: Role, *, hub_wide: bool = False) -> Requirement:
    """The one dependency an admin route declares (one instance per requirement, so FastAPI runs
    it once per request)."""
    return Requirement(role, hub_wide)


def served_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Every FastAPI route the app serves, with its path as served. (FastAPI from 0.16x keeps an
    included router as one entry of ``app.routes`` and lists its routes through route contexts;
    earlier versions copy them into ``app.routes``.)"""
    contexts = getattr(routing, "iter_route_contexts", None)
    if contexts is None:
        yield from ((r.path_format, r) for r in app.routes if isinstance(r, APIRoute))
        return
    for context in contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context.path_format, context.original_route


def requirement_of(route: APIRoute) -> Requirement | None:
    """The ``Requirement`` a route depends on, if any (at any depth)."""
    def walk(dependant: Dependant) -> Iterator[Requirement]:
        for sub in dependant.dependencies:
            if isinstance(sub.call, Requirement):
                yield sub.call
            yield from walk(sub)
    return next(walk(route.dependant), None)


Viewer = Annotated[Scope, Depends(require(Role.VIEWER))]
Operator = Annotated[Scope, Depends(require(Role.OPERATOR))]
Admin = Annotated[Scope, Depends(require(Role.ADMIN))]
HubAdmin = Annotated[Scope, Depends(require(Role.ADMIN, hub_wide=True))]
CurrentGate = Annotated[Gate, Depends(current_gate)]
