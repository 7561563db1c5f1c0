"""The gate API: each gate, by its own token, fetches its bundle, uploads events, pulls the other
gates' redemptions and reports its health. A gate sees only its own venue's data."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import func, select

from passgate import wire

from .. import audit, denylists, ingest, ops, published, rounds, sealing
from ..auth import DB, CurrentGate, syncing_gate, uploading_gate
from ..models import REDEMPTION_KINDS, Event, IssuedPass, IssuerKey, Venue, Zone
from ..schemas import (
    Bundle,
    Enrolled,
    EnrollRequest,
    EventAck,
    EventBatch,
    Heartbeat,
    HeartbeatAck,
    Redemptions,
    SyncAnswer,
    SyncRequest,
    parse_body,
    parsed_by_route,
)

log = logging.getLogger(__name__)
_REDEEMED = str(wire.EventKind.REDEEMED)
SYNC_REDEMPTIONS = 1000  # the page a sync answer carries; a gate asks for more while ``more``


async def gate_protocol(request: Request) -> int:
    """The protocol the gate speaks, from its ``wire.PROTOCOL_HEADER`` (none: 1, as before the
    header existed); a gate newer than this hub is answered 426. (``async``: FastAPI runs it on
    the event loop, not on a worker thread of its own.)"""
    value = request.headers.get(wire.PROTOCOL_HEADER)
    if value is None:
        return 1
    if re.fullmatch(r"[0-9]{1,6}", value.strip()) is None or int(value) < 1:
        raise HTTPException(400, f"{wire.PROTOCOL_HEADER} names a protocol version (an integer "
                                 f"from 1), got {value[:32]!r}")
    if int(value) > wire.PROTOCOL_VERSION:
        raise HTTPException(426, f"this gate speaks protocol {int(value)}, this hub at most "
                                 f"{wire.PROTOCOL_VERSION}: upgrade the hub",
                            headers={wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)})
    return int(value)


Protocol = Annotated[int, Depends(gate_protocol)]
router = APIRouter(prefix="/v1/gates/{gate_id}", tags=["gate"], dependencies=[Depends(gate_protocol)])


@router.get("/bundle", response_model=Bundle, responses={304: {"description": "unchanged"}})
def bundle(*, request: Request, response: Response,
           revoked: int = Query(0, ge=0, le=wire.bounds(wire.ListUpdate, "version")["le"],
                                description="the gate's revoked-list version"),
           blocked: int = Query(0, ge=0, le=wire.bounds(wire.ListUpdate, "version")["le"],
                                description="the gate's blocked-list version"),
           revoked_issued_at: int | None = Query(None, ge=0, le=2**62,
                                                 description="when the gate's revoked list was signed"),
           blocked_issued_at: int | None = Query(None, ge=0, le=2**62,
                                                 description="when the gate's blocked list was signed"),
           gate: CurrentGate, protocol: Protocol, db: DB) -> Any:
    """Trusted keys, the deny-list updates from the gate's versions, and the gate's config; for a
    gate of protocol 3, a signed statement that each list is current (``ListUpdate.fresh``).

    Send the last ETag as If-None-Match: while nothing changed the answer is an empty 304.
    """
    have = {"revoked": revoked, "blocked": blocked}
    signed = {"revoked": revoked_issued_at, "blocked": blocked_issued_at}
    etag, answer, _ = _bundle(request, db, gate, protocol, have, signed, request.headers.get("if-none-match"))
    if answer is None:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return wire.dump(answer)


def _bundle(request: Request, db: Any, gate: Any, protocol: int, have: dict[str, int],
            signed: dict[str, int | None], held_etag: str | None, *, apart: bool = False,
            held_as_of: Mapping[str, int | None] | None = None,
            ) -> tuple[str, wire.Bundle | None, dict[str, str]]:
    """The bundle's ETag; the bundle unless the gate holds that ETag and what it brings (None);
    and, when no bundle goes to a gate that takes statements apart (``apart``, protocol 4), the
    statements newer than those it holds (``held_as_of``)."""
    reads_freshness = protocol >= denylists.FRESH_PROTOCOL
    vectors = request.app.state.vectors
    now = time.time()
    as_of = denylists.fresh_as_of(now)
    held_as_of = held_as_of or {}
    etag = vectors.unchanged(gate, have, signed, held_etag, now, apart=apart) if reads_freshness else None
    if etag is not None:
        due = vectors.statements(gate.venue_id, have, signed, held_as_of, now) if apart else {}
        if due is not None:
            return etag, None, due
    generation = vectors.generation
    venue, zone = db.execute(select(Venue, Zone.name).outerjoin(Zone, Zone.id == gate.zone_id)
                             .where(Venue.id == gate.venue_id)).one()
    # a gate ahead, or holding this version number with other contents: a new epoch
    try:
        versions, changed = denylists.refreshed_versions(db, venue, have, signed, by_age=not reads_freshness)
    except sealing.SealingError as exc:  # lists stay as signed; the gate's stale policy judges them
        log.warning("%s: lists not re-signed: %s", venue.name, exc)
        db.rollback()
        versions, changed = denylists.current_versions(db, venue), False
    if changed:
        db.commit()
    etag, holds = rounds.bundle_etag(venue.keys_rev, zone, gate.config, versions, have, signed,
                                     None if apart or not reads_freshness else as_of)
    statements = {kind: text for kind, (version, _) in versions.items()
                  if (text := _statement(request, db, venue, kind, version, as_of)) is not None
                  } if reads_freshness else {}
    if reads_freshness and not changed:
        vectors.read(generation, gate, venue, zone, versions, as_of, statements, now)
    if held_etag == etag and holds:
        return etag, None, (rounds.due_statements(statements, versions, have, signed, held_as_of, as_of)
                            if apart else {})
    keys = db.scalars(select(IssuerKey).where(IssuerKey.venue_id == venue.id).order_by(IssuerKey.id))
    cache = request.app.state.snapshots

    def forked(kind: str) -> bool:
        """The gate holds this version number signed at another time (a restored hub's list of
        other contents): no statement vouches for it; the new epoch will replace it."""
        version, issued_at = versions[kind]
        return have[kind] == version and signed[kind] not in (None, issued_at)

    publisher = request.app.state.published if reads_freshness else None  # protocol 3 downloads files

    def update(kind: str, version: int, issued_at: int) -> wire.ListUpdate:
        files = denylists.updates_for(db, venue, kind, have[kind], (version, issued_at), cache)
        fresh = statements.get(kind) if not forked(kind) else None
        if publisher is not None:
            return wire.ListUpdate(version=version, issued_at=issued_at, fresh=fresh,
                                   files=[publisher.file(data) for data in files])
        return wire.ListUpdate(version=version, issued_at=issued_at, fresh=fresh,
                               updates=[base64.b64encode(data).decode() for data in files])

    lists = {kind: update(kind, *current) for kind, current in versions.items()}
    settings = _settings(gate.config, zone)
    return etag, wire.Bundle(
        gate_id=gate.gate_id, venue=venue.name, zone=zone, scope=venue.name,
        protocol=wire.PROTOCOL_VERSION,
        keys=[wire.TrustedKey(kid=k.kid, pem=k.public_pem, issuer=k.issuer,
                              purpose=wire.KeyPurpose(k.purpose), retired_at=k.retired_at,
                              revoked_at=k.revoked_at,
                              scope=venue.name if k.purpose == wire.KeyPurpose.DENYLIST else None)
              for k in keys],
        denylists=lists,
        settings=settings,
        config={"zones": [zone] if zone else [], **gate.config},  # for gates of protocol 1
    ), {}


def _statement(request: Request, db: Any, venue: Venue, kind: str, version: int, as_of: int) -> str | None:
    """The freshness statement for a list at ``version`` (base64), or None: the hub cannot sign
    (an offline issuer's venue, a sealed key)."""
    try:
        data = request.app.state.freshness.get(db, venue, kind, version, as_of)
    except sealing.SealingError as exc:  # the gate's stale policy judges the list by its signing time
        log.warning("%s: no freshness statement for the %s list: %s", venue.name, kind, exc)
        return None
    return base64.b64encode(data).decode() if data is not None else None


def _settings(config: dict[str, Any], zone: str | None) -> wire.GateSettings:
    """The settings the hub manages for a gate; its zone is the gate's zone on the hub."""
    given = {**config, **({"zones": [zone]} if zone else {})}
    try:
        return wire.parse(wire.GateSettings, given)
    except wire.ProtocolError as exc:  # stored before settings were validated: the zone still rules
        log.error("gate settings on the hub are not valid (%s): sending the zone only", exc)
        return wire.GateSettings(zones=[zone] if zone else None)


@router.post("/events", response_model=EventAck, openapi_extra=parsed_by_route(EventBatch))
async def upload_events(*, gate_id: str, request: Request) -> Response:
    """Store a batch of journal events (an ``EventBatch``); re-sending a batch stores nothing
    twice (by event id).

    Every id in ``acked`` is held by the hub once this returns: the gate may mark them sent. An
    event the hub will never store (in the future, or a redemption this gate cannot have made)
    is listed in ``rejected`` with the reason, one the hub cannot judge yet in ``deferred``; the
    rest of the batch is stored all the same.
    """
    body = await request.body()
    return Response(await run_in_threadpool(_upload, request, gate_id, body),
                    media_type="application/json")


def _upload(request: Request, gate_id: str, body: bytes) -> bytes:
    """The upload's whole work on one worker thread: the token, the body, the batch, the commit.
    (The hub's busiest route: declared as dependencies, a body and a response model, each of
    these would be a hop between the event loop and a thread of its own, and the body would be
    parsed twice over, as JSON and then as a model.)"""
    with request.app.state.sessions() as db:
        gate = uploading_gate(request, db, gate_id)
        batch = parse_body(EventBatch, body)
        if any(e.gate_id != gate.gate_id for e in batch.events):
            raise HTTPException(403, "a gate may only upload its own events")
        done = ingest.ingest(db, gate, batch.model_dump()["events"])
        db.commit()
    if done.stored:
        request.app.state.known.forget(gate.venue_id)  # its redemptions: read again at the next round
    return json.dumps(wire.dump(wire.EventAck(
        acked=done.acked, stored=done.stored, rejected=done.rejected,
        duplicates=len(done.acked) - done.stored, deferred=done.deferred))).encode()


@router.get("/redemptions", response_model=Redemptions)
def redemptions(*, after: int = Query(0, ge=0, le=2**62, description="cursor from the last answer"),
                limit: int = Query(1000, ge=1, le=wire.MAX_REDEMPTIONS),
                include_own: bool = Query(False, description="also this gate's own redemptions "
                                          "(a gate whose journal was lost fetches its history again)"),
                gate: CurrentGate, db: DB) -> Any:
    """Redemptions made at the venue's other gates (with ``include_own``, at this gate too) after
    ``after``, in commit-safe order; ``t`` is hub time.

    Rows are paged by ``Event.pos``, one value per ingest transaction. On PostgreSQL only
    positions below the oldest transaction still running are served (its rows, and any later
    one's, may still commit), so a cursor never passes a row that commits late; a page ends at a
    transaction's last row (holding one whole transaction even when ``limit`` is smaller), so the
    cursor, a position, never splits one."""
    return wire.dump(_redemptions(db, gate, after, limit, include_own))


def _redemptions(db: Any, gate: Any, after: int, limit: int, include_own: bool) -> wire.RedemptionPage:
    """A page of the venue's redemptions after ``after`` (see ``redemptions``)."""
    query = (select(Event.pos, Event.event_id, Event.kind, Event.detail, Event.pass_id, Event.gate_id,
                    Event.direction, Event.hub_t, IssuedPass.valid_until)
             .outerjoin(IssuedPass, IssuedPass.pass_id == Event.pass_id)
             .where(Event.venue_id == gate.venue_id, Event.kind.in_(REDEMPTION_KINDS)))
    if db.get_bind().dialect.name == "postgresql":
        query = query.where(Event.pos < ingest.HORIZON)
    rows = db.execute(query.where(Event.pos > after).order_by(Event.pos, Event.seq).limit(limit)).all()
    if not rows and after > 0 and after > (db.scalar(select(func.max(Event.pos)).where(
            Event.venue_id == gate.venue_id, Event.kind.in_(REDEMPTION_KINDS))) or 0):
        # The gate holds a position this hub never reached: the hub was restored from a backup.
        # From the start again (the gate keeps each redemption once), or it would miss every new one.
        log.warning("gate %s asks for redemptions after %d, beyond this hub's last: restored from a "
                    "backup? serving the venue's redemptions from the start", gate.gate_id, after)
        rows = db.execute(query.where(Event.pos > 0).order_by(Event.pos, Event.seq).limit(limit)).all()
    full = len(rows) == limit
    if full:
        last = rows[-1].pos
        if rows[0].pos != last:  # the last transaction may go on past the limit: next page
            rows = [r for r in rows if r.pos != last]
        else:
            rows = db.execute(query.where(Event.pos == last).order_by(Event.seq)).all()
    shared = [r for r in rows if (include_own or r.gate_id != gate.gate_id)
              and ingest.unshareable(r.pass_id, r.direction) is None]  # (rows from before checks)
    out = [wire.Redemption(redemption_id=r.detail if r.kind == _REDEEMED and r.detail else r.event_id,
                           pass_id=r.pass_id, gate_id=r.gate_id, direction=wire.Direction(r.direction),
                           t=r.hub_t, valid_until=r.valid_until) for r in shared]
    return wire.RedemptionPage(redemptions=out, cursor=rows[-1].pos if rows else after, more=full)


@router.post("/heartbeat", response_model=HeartbeatAck)
def heartbeat(*, beat: Heartbeat, gate: CurrentGate, protocol: Protocol, db: DB) -> Any:
    """Record the gate's health, protocol and clock offset (its ``t`` minus the hub's receive
    time: the correction of its events' times); the answer carries the hub's clock for the
    gate's own view of the offset."""
    now = time.time()
    _beat(gate, beat.model_dump(), protocol, now)
    db.commit()
    return wire.dump(wire.HeartbeatAck(server_time=now))


def _beat(gate: Any, beat: dict[str, Any], protocol: int, now: float) -> None:
    gate.last_seen = now
    gate.clock_offset_s = beat["t"] - now
    gate.protocol = protocol
    gate.health = {**beat, "received": now}


@router.post("/sync", response_model=SyncAnswer, openapi_extra=parsed_by_route(SyncRequest))
async def sync(*, gate_id: str, request: Request, protocol: Protocol) -> Response:
    """A whole sync round but the upload, in one request (protocol 3; a ``SyncRequest``): the
    heartbeat is recorded, the bundle comes back only when it changed since ``etag`` (None: what a
    304 says), with the first page of the other gates' redemptions after ``redemptions_after``.
    What a quiet gate sends every round."""
    body = await request.body()
    answer = _quiet_round(request, gate_id, protocol, body)
    if answer is None:
        answer = await run_in_threadpool(_sync, request, gate_id, protocol, body)
    return Response(answer, media_type="application/json")


def _held(wanted: dict[str, Any]) -> tuple[dict[str, int], dict[str, int | None], dict[str, int | None]]:
    """The list versions, signing times and statements' times a ``SyncRequest`` says the gate holds."""
    held = wanted["lists"]
    return ({kind: held[kind]["version"] if kind in held else 0 for kind in denylists.KINDS},
            {kind: held[kind]["issued_at"] if kind in held else None for kind in denylists.KINDS},
            {kind: held[kind]["as_of"] if kind in held else None for kind in denylists.KINDS})


def _quiet_round(request: Request, gate_id: str, protocol: int, body: bytes) -> bytes | None:
    """The answer to a quiet round from what this worker knows (``rounds``), on the event loop: no
    query, no thread. None when anything is not known to be quiet: the full round decides."""
    state = request.app.state
    now = time.time()
    card = rounds.quiet_gate(request, gate_id, state.known, state.vectors.gates_rev, now)
    if card is None or protocol < denylists.FRESH_PROTOCOL:
        return None
    wanted = parse_body(SyncRequest, body).model_dump()
    have, signed, as_of = _held(wanted)
    after = wanted["redemptions_after"]
    apart = protocol >= denylists.FRESH_APART_PROTOCOL
    etag = state.vectors.unchanged(card, have, signed, wanted["etag"], now, apart=apart)
    due = state.vectors.statements(card.venue_id, have, signed, as_of, now) if apart else {}
    if (etag is None or due is None or not state.known.nothing_after(card.venue_id, after, now)
            or not state.beats.batched(card, wanted["heartbeat"], protocol, now)):
        return None
    return rounds.quiet_answer(now, etag, after, due)


def _sync(request: Request, gate_id: str, protocol: int, body: bytes) -> bytes:
    """The round's whole work on one worker thread, as the upload's (``_upload``): declared as
    dependencies, a body and a response model, the token, the session, the body and the answer
    would each be a hop between the event loop and a thread of their own. The token first. What
    it reads of the gate and the venue's redemptions is kept for the next quiet rounds."""
    state = request.app.state
    with state.sessions() as db:
        now = time.time()
        gate = syncing_gate(request, db, gate_id)
        state.known.keep_gate(gate.token_hash, gate, now)
        wanted = parse_body(SyncRequest, body).model_dump()
        have, signed, as_of = _held(wanted)
        # the bundle first: it may roll back (a sealed key), which must not take the heartbeat with it
        etag, bundle_, fresh = _bundle(request, db, gate, protocol, have, signed, wanted["etag"],
                                       apart=protocol >= denylists.FRESH_APART_PROTOCOL, held_as_of=as_of)
        page = _redemptions(db, gate, wanted["redemptions_after"], SYNC_REDEMPTIONS, include_own=False)
        if not page.more:
            state.known.read_newest(db, gate.venue_id, now)
        now = time.time()
        beat = state.beats.take(gate, wanted["heartbeat"], protocol, now)
        if beat is not None:
            rounds.Beats.write(db, [beat])
        db.commit()
    return json.dumps(wire.dump(wire.SyncAnswer(server_time=now, etag=etag, bundle=bundle_, fresh=fresh,
                                                redemptions=page))).encode()


enroll_router = APIRouter(prefix="/v1", tags=["gate"])
files_router = APIRouter(prefix=published.PATH, tags=["gate"])


@files_router.get("/{name}", include_in_schema=False)
def list_file(name: str, request: Request) -> Response:
    """A published deny-list file (signed; its name is its SHA-256), with ``Range`` for a gate
    resuming a cut download; immutable, so any cache may keep it. No credential: the bundle that
    names it needs one, and the file holds only hashes of pass ids, signed."""
    publisher = request.app.state.published
    path = publisher.path_of(name) if publisher is not None else None
    if path is None:
        raise HTTPException(404, "no such list file")
    return FileResponse(path, media_type="application/octet-stream",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


@enroll_router.post("/enroll", response_model=Enrolled)
def enroll(*, body: EnrollRequest, request: Request, db: DB) -> Any:
    """A gate joins its hub: the one-time code an operator was shown (console or ``passgate-hub
    gate enroll-code``) for the gate's id, venue and a new token. The code works once and for a
    day; a wrong, used or expired one is 404, a disabled gate 409."""
    audit.act_as(db, audit.Actor("enroll", request.client.host if request.client else None))
    gate, venue, token = ops.enroll(db, body.code)
    db.commit()
    return wire.dump(wire.Enrolled(gate_id=gate.gate_id, venue=venue, token=token))
