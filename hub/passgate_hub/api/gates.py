"""The gate API: each gate, by its own token, fetches its bundle, uploads events, pulls the other
gates' redemptions and reports its health. A gate sees only its own venue's data."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite

from passgate import wire

from .. import denylists
from ..auth import DB, CurrentGate
from ..models import REDEMPTION_KINDS, Event, IssuedPass, IssuerKey, Venue, Zone
from ..schemas import Bundle, EventAck, EventBatch, Heartbeat, HeartbeatAck, Redemptions

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/gates/{gate_id}", tags=["gate"])
MAX_REDEMPTIONS = 5000
# Each dialect's own insert(): the generic one has no ON CONFLICT clause.
_INSERT: dict[str, Callable[[type[Event]], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _etag(*parts: object) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f'"{digest[:32]}"'


@router.get("/bundle", response_model=Bundle, responses={304: {"description": "unchanged"}})
def bundle(*, request: Request, response: Response,
           revoked: int = Query(0, ge=0, le=2**31, description="the gate's revoked-list version"),
           blocked: int = Query(0, ge=0, le=2**31, description="the gate's blocked-list version"),
           gate: CurrentGate, db: DB) -> Any:
    """Trusted keys, the deny-list updates from the gate's versions, and the gate's config.

    Send the last ETag as If-None-Match: while nothing changed the answer is an empty 304.
    """
    venue, zone = db.execute(select(Venue, Zone.name).outerjoin(Zone, Zone.id == gate.zone_id)
                             .where(Venue.id == gate.venue_id)).one()
    versions, changed = denylists.refreshed_versions(db, venue)
    if changed:
        db.commit()
    have = {"revoked": revoked, "blocked": blocked}
    etag = _etag(venue.keys_rev, zone, gate.config, versions, have)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    keys = db.scalars(select(IssuerKey).where(IssuerKey.venue_id == venue.id).order_by(IssuerKey.id))
    cache = request.app.state.snapshots
    lists = {kind: wire.ListUpdate(version=version, issued_at=issued_at, updates=[
        base64.b64encode(data).decode()
        for data in denylists.updates_for(db, venue, kind, have[kind], (version, issued_at), cache)])
        for kind, (version, issued_at) in versions.items()}
    settings = _settings(gate.config, zone)
    return wire.dump(wire.Bundle(
        gate_id=gate.gate_id, venue=venue.name, zone=zone, scope=venue.name,
        protocol=wire.PROTOCOL_VERSION,
        keys=[wire.TrustedKey(kid=k.kid, pem=k.public_pem, issuer=k.issuer,
                              purpose=wire.KeyPurpose(k.purpose), retired_at=k.retired_at)
              for k in keys],
        denylists=lists,
        settings=settings,
        config={"zones": [zone] if zone else [], **gate.config},  # for gates of protocol 1
    ))


def _settings(config: dict[str, Any], zone: str | None) -> wire.GateSettings:
    """The settings the hub manages for a gate; its zone is the gate's zone on the hub."""
    given = {**config, **({"zones": [zone]} if zone else {})}
    try:
        return wire.parse(wire.GateSettings, given)
    except wire.ProtocolError as exc:  # stored before settings were validated: the zone still rules
        log.error("gate settings on the hub are not valid (%s): sending the zone only", exc)
        return wire.GateSettings(zones=[zone] if zone else None)


@router.post("/events", response_model=EventAck)
def upload_events(*, batch: EventBatch, gate: CurrentGate,
                  db: DB) -> EventAck:
    """Store a batch of journal events; re-sending a batch stores nothing twice (by event id).

    Every id in the answer is held by the hub once this returns: the gate may mark them sent.
    """
    if any(e.gate_id != gate.gate_id for e in batch.events):
        raise HTTPException(403, "a gate may only upload its own events")
    now = time.time()
    rows = {e.event_id: {**e.model_dump(), "venue_id": gate.venue_id, "received_at": now}
            for e in batch.events}
    stored = 0
    if rows:
        dialect = db.get_bind().dialect.name
        if dialect == "postgresql" and any(r["kind"] in REDEMPTION_KINDS for r in rows.values()):
            # Redemptions of a venue commit in sequence order, so a gate reading after a cursor
            # never skips a row that commits late with a smaller seq.
            db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": gate.venue_id})
        # executemany of one cached statement: SQLAlchemy sends it as multi-row VALUES pages
        stmt = (_INSERT[dialect](Event).on_conflict_do_nothing(index_elements=["event_id"])
                .returning(Event.seq))
        stored = len(db.connection().execute(stmt, list(rows.values())).all())
        db.commit()
    return EventAck(acked=list(rows), stored=stored, duplicates=len(rows) - stored)


@router.get("/redemptions", response_model=Redemptions)
def redemptions(*, after: int = Query(0, ge=0, le=2**62, description="cursor from the last answer"),
                limit: int = Query(1000, ge=1, le=MAX_REDEMPTIONS),
                include_own: bool = Query(False, description="also this gate's own redemptions "
                                          "(a gate whose journal was lost fetches its history again)"),
                gate: CurrentGate, db: DB) -> Any:
    """Redemptions made at the venue's other gates (with ``include_own``, at this gate too) after
    ``after``, in hub order."""
    rows = db.execute(
        select(Event.seq, Event.event_id, Event.kind, Event.detail, Event.pass_id, Event.gate_id,
               Event.direction, Event.t, IssuedPass.valid_until)
        .outerjoin(IssuedPass, IssuedPass.pass_id == Event.pass_id)
        .where(Event.venue_id == gate.venue_id, Event.kind.in_(REDEMPTION_KINDS), Event.seq > after)
        .order_by(Event.seq).limit(limit)
    ).all()
    out = [wire.Redemption(redemption_id=detail if kind == wire.EventKind.REDEEMED and detail else event_id,
                           pass_id=pass_id, gate_id=gate_id, direction=wire.Direction(direction), t=t,
                           valid_until=valid_until)
           for _, event_id, kind, detail, pass_id, gate_id, direction, t, valid_until in rows
           if (include_own or gate_id != gate.gate_id) and pass_id and direction]
    return wire.dump(wire.RedemptionPage(redemptions=out, cursor=rows[-1][0] if rows else after))


@router.post("/heartbeat", response_model=HeartbeatAck)
def heartbeat(*, beat: Heartbeat, gate: CurrentGate,
              db: DB) -> HeartbeatAck:
    """Record the gate's health; the answer carries the hub's clock for the gate's offset."""
    now = time.time()
    gate.last_seen = now
    gate.health = {**beat.model_dump(), "received": now}
    db.commit()
    return HeartbeatAck(server_time=now)
