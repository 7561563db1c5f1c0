"""The admin API (API keys): venues, zones, gates, keys, passes, deny lists, events, counts,
alerts; API keys, operators, gate tokens and enrollment, the retention purge and the audit log.
``passgate-hub --url`` runs its commands through it (``passgate_hub.remote``).

Every route names the role it needs as its ``access`` parameter (``auth.Viewer``, ``Operator``,
``Admin``, ``HubAdmin``); ``app.create_app`` refuses to build with an admin route that does not."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from .. import apikeys, audit, claims, denylists, offline, operators, ops, retention
from ..auth import DB, Admin, HubAdmin, Operator, Viewer, current_admin
from ..schemas import (
    AlertOut,
    ApiKeyIn,
    ApiKeyOut,
    ApiKeySecret,
    AuditOut,
    ClaimReset,
    DenyIn,
    DenyOut,
    EnrollmentCode,
    EventOut,
    GateCreated,
    GateIn,
    GateOut,
    GatePatch,
    GateToken,
    Issued,
    IssuedPassOut,
    IssueIn,
    KeyIn,
    KeyOut,
    KeyRetireIn,
    KeyRotated,
    KeyRotateIn,
    Name,
    OperatorCreated,
    OperatorIn,
    OperatorOut,
    PassesIn,
    PassesRecorded,
    PendingListOut,
    PurgeIn,
    PurgeOut,
    SignedListOut,
    VenueIn,
    VenueOut,
    VenuePatch,
    ZoneCount,
    ZoneIn,
)
from ..scope import Role

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="a key id (16 hex characters)")]
router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(current_admin)])


@router.post("/venues", response_model=VenueOut, status_code=201)
def create_venue(*, body: VenueIn, access: HubAdmin, db: DB) -> VenueOut:
    ops.create_venue(db, body.name, offline=body.offline, denylist_public_pem=body.denylist_public_pem)
    db.commit()
    return VenueOut(**next(v for v in ops.list_venues(db) if v["name"] == body.name))


@router.get("/venues", response_model=list[VenueOut])
def list_venues(*, access: Viewer, db: DB) -> list[VenueOut]:
    """The venues the key holds a grant on."""
    return [VenueOut(**v) for v in ops.list_venues(db, access.ids_with(Role.VIEWER))]


@router.patch("/venues/{venue}", response_model=VenueOut)
def set_venue(*, venue: Name, body: VenuePatch, access: Admin, db: DB) -> VenueOut:
    """Set how long the hub keeps the venue's events and alerts (``retention_days``) and the pass
    ids in them (``window_hours``); the next purge applies it."""
    changed = ops.set_venue(db, ops.get_venue(db, venue), **body.model_dump())
    db.commit()
    return VenueOut(**changed)


@router.post("/venues/{venue}/zones", response_model=ZoneIn, status_code=201)
def create_zone(*, venue: Name, body: ZoneIn, access: Admin, db: DB) -> ZoneIn:
    ops.create_zone(db, ops.get_venue(db, venue), body.name)
    db.commit()
    return body


@router.post("/venues/{venue}/gates", response_model=GateCreated, status_code=201)
def create_gate(*, venue: Name, body: GateIn, access: Admin, db: DB) -> GateCreated:
    """Register a gate; the answer holds its token, which the hub cannot show again."""
    token = ops.create_gate(db, ops.get_venue(db, venue), body.gate_id, body.zone, body.settings)
    db.commit()
    return GateCreated(gate_id=body.gate_id, venue=venue, token=token)


@router.patch("/venues/{venue}/gates/{gate_id}", response_model=GateOut)
def set_gate(*, venue: Name, gate_id: Name, body: GatePatch, access: Admin, db: DB) -> GateOut:
    """Change a gate's zone or settings; the gate picks them up with its next bundle."""
    gate = ops.set_gate(db, ops.get_venue(db, venue), gate_id, zone=body.zone, settings=body.settings)
    db.commit()
    return GateOut(**gate)


@router.get("/gates", response_model=list[GateOut])
def list_gates(*, venue: Name | None = None, access: Viewer, db: DB) -> list[GateOut]:
    """The gates of the key's venues (or of ``venue``) with last seen, list ages, unsent backlog,
    software version and clock skew."""
    if venue:
        access.check(venue, Role.VIEWER)
    target = ops.get_venue(db, venue) if venue else None
    return [GateOut(**g) for g in ops.list_gates(db, target, only=access.ids_with(Role.VIEWER))]


@router.post("/venues/{venue}/keys", response_model=KeyOut, status_code=201)
def add_key(*, venue: Name, body: KeyIn, access: Admin, db: DB) -> KeyOut:
    """Trust an issuer's public key, or generate one for hub-side issuing."""
    row = ops.add_key(db, ops.get_venue(db, venue), public_pem_text=body.public_pem,
                      generate=body.generate, alg=body.alg, issuer=body.issuer)
    db.commit()
    return KeyOut.of(row)


@router.get("/venues/{venue}/keys", response_model=list[KeyOut])
def list_keys(*, venue: Name, access: Viewer, db: DB) -> list[KeyOut]:
    return [KeyOut.of(row) for row in ops.list_keys(db, ops.get_venue(db, venue))]


@router.post("/venues/{venue}/keys/rotate", response_model=KeyRotated, status_code=201)
def rotate_key(*, venue: Name, body: KeyRotateIn, access: Admin, db: DB) -> KeyRotated:
    """A new hub-held pass key; the hub-held ones in use are retired now (their passes stay valid)."""
    row, retired = ops.rotate_key(db, ops.get_venue(db, venue), alg=body.alg)
    db.commit()
    return KeyRotated(new=KeyOut.of(row), retired=retired)


@router.post("/venues/{venue}/keys/{kid}/retire", response_model=KeyOut)
def retire_key(*, venue: Name, kid: KeyId, body: KeyRetireIn, access: Admin, db: DB) -> KeyOut:
    """Refuse passes the key issues from ``at`` on; gates follow within one sync."""
    row = ops.retire_key(db, ops.get_venue(db, venue), kid, at=body.at)
    db.commit()
    return KeyOut.of(row)


@router.post("/venues/{venue}/keys/{kid}/revoke", response_model=KeyOut)
def revoke_key(*, venue: Name, kid: KeyId, access: Admin, db: DB) -> KeyOut:
    """The key leaked: gates refuse every pass under it; they follow within one sync."""
    row = ops.revoke_key(db, ops.get_venue(db, venue), kid)
    db.commit()
    return KeyOut.of(row)


@router.get("/venues/{venue}/keys/{kid}.pem", response_class=PlainTextResponse,
            responses={200: {"content": {"application/x-pem-file": {}}}})
def export_key(*, venue: Name, kid: KeyId, access: Viewer, db: DB) -> PlainTextResponse:
    """A key's public PEM (a pass key, or the deny-list key: see ``denylist_kid`` of the venue)."""
    pem = ops.export_key(db, ops.get_venue(db, venue), kid)
    return PlainTextResponse(pem, media_type="application/x-pem-file")


PassId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="a pass id (32 hex characters)")]


@router.post("/venues/{venue}/passes", response_model=Issued, response_model_exclude_none=True,
             status_code=201)
def issue_passes(*, venue: Name, body: IssueIn, request: Request, access: Operator, db: DB) -> Issued:
    """Issue passes in bulk with the venue's hub-held key (the CLI writes them as CSV + QR).
    ``holder_bound``: each pass gets a one-time ``claim_code`` and ``claim_url`` (the wallet link
    that claims it) instead of a text; the hub signs it when claimed, with the holder's key inside."""
    given = body.model_dump()
    bound, step = given.pop("holder_bound"), given.pop("holder_step")
    target = ops.get_venue(db, venue)
    if not bound:
        kid, passes = ops.issue(db, target, **given)
        db.commit()
        return Issued(kid=kid, passes=[IssuedPassOut(pass_id=p, text=t) for p, t in passes])
    if not given.pop("record"):
        raise ops.Invalid("a holder-bound pass is signed when claimed, from its record: record must be true")
    kid, codes = claims.issue_bound(db, target, holder_step=step, **given)
    db.commit()
    return Issued(kid=kid, passes=[IssuedPassOut(pass_id=p, claim_code=code, claim_url=url)
                                   for p, url, code in claims.links(claims.request_base(request), codes)])


@router.post("/venues/{venue}/passes/{pass_id}/claim/reset", response_model=ClaimReset)
def reset_claim(*, venue: Name, pass_id: PassId, request: Request, access: Operator, db: DB) -> ClaimReset:
    """A new one-time claim code for a holder-bound pass (the old one is void). The device that
    claimed the pass before keeps a valid pass; if that phone was stolen, revoke the pass and
    issue a new one instead."""
    code = claims.reset(db, ops.get_venue(db, venue), pass_id)
    db.commit()
    url = claims.claim_url(claims.request_base(request), code)
    return ClaimReset(pass_id=pass_id, claim_code=code, claim_url=url, note=claims.STOLEN)


def _deny(db: Session, venue: str, kind: str, body: DenyIn, *, remove: bool) -> DenyOut:
    version, changed = ops.deny(db, ops.get_venue(db, venue), kind, body.pass_ids, remove=remove,
                                external=body.external, reason=body.reason)
    db.commit()
    return DenyOut(kind=kind, version=version, changed=changed)


@router.post("/venues/{venue}/revocations", response_model=DenyOut)
def revoke(*, venue: Name, body: DenyIn, access: Operator, db: DB) -> DenyOut:
    """Revoke passes for good (one new list version for the whole batch)."""
    return _deny(db, venue, "revoked", body, remove=False)


@router.post("/venues/{venue}/blocks", response_model=DenyOut)
def block(*, venue: Name, body: DenyIn, access: Operator, db: DB) -> DenyOut:
    return _deny(db, venue, "blocked", body, remove=False)


@router.post("/venues/{venue}/unblocks", response_model=DenyOut)
def unblock(*, venue: Name, body: DenyIn, access: Operator, db: DB) -> DenyOut:
    return _deny(db, venue, "blocked", body, remove=True)


@router.get("/venues/{venue}/denylists/{kind}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def denylist_snapshot(*, venue: Name, kind: str, request: Request, access: Viewer,
                      db: DB) -> Response:
    """The signed snapshot file of a list (for gates fed from a file share or static server)."""
    target = ops.get_venue(db, venue)
    versions = denylists.current_versions(db, target)
    if kind not in versions:
        raise ops.NotFound(f"no list {kind!r}; lists are {', '.join(denylists.KINDS)}")
    version, issued_at = versions[kind]
    data = request.app.state.snapshots.get(db, target, kind, version, issued_at) if version else b""
    if not data:
        raise ops.NotFound(f"the {kind} list of {venue!r} has no version yet")
    return Response(data, media_type="application/octet-stream")


@router.get("/venues/{venue}/events", response_model=list[EventOut])
def query_events(*, venue: Name, gate_id: Name | None = None, kind: str | None = Query(None, max_length=32),
                 after: int = Query(0, ge=0, le=2**62),
                 since: float | None = Query(None, allow_inf_nan=False, description="hub time, epoch s"),
                 until: float | None = Query(None, allow_inf_nan=False, description="hub time, epoch s"),
                 limit: int = Query(1000, ge=1, le=10000),
                 access: Viewer, db: DB) -> list[EventOut]:
    """Events in hub order; page with ``after`` = the last ``seq`` received."""
    rows = ops.query_events(db, ops.get_venue(db, venue), gate_id=gate_id, kind=kind, after=after,
                            since=since, until=until, limit=limit)
    return [EventOut.model_validate(row, from_attributes=True) for row in rows]


@router.get("/venues/{venue}/counts", response_model=list[ZoneCount])
def zone_counts(*, venue: Name, access: Viewer, db: DB) -> list[ZoneCount]:
    """Live counts per zone: inside = entries − exits through the zone's gates."""
    return [ZoneCount(**c) for c in ops.zone_counts(db, ops.get_venue(db, venue))]


@router.get("/venues/{venue}/alerts", response_model=list[AlertOut])
def list_alerts(*, venue: Name, after: int = Query(0, ge=0, le=2**62, description="the last id received"),
                limit: int = Query(1000, ge=1, le=10000), access: Viewer, db: DB) -> list[AlertOut]:
    """What ingest raised, oldest first: a pass redeemed (entry) beyond what it allows, with the
    gates and hub times of its redemptions (a pass admitted at gates that could not reach the hub
    or each other until they synced)."""
    return [AlertOut(**a) for a in ops.list_alerts(db, ops.get_venue(db, venue), after=after, limit=limit)]



# --- gate lifecycle ---------------------------------------------------------------------------


@router.post("/venues/{venue}/gates/{gate_id}/token/rotate", response_model=GateToken, status_code=201)
def rotate_gate_token(*, venue: Name, gate_id: Name, access: Admin, db: DB) -> GateToken:
    """A new token for the gate (shown once; also after a revocation); the old one is refused at once."""
    token = ops.rotate_gate_token(db, ops.get_venue(db, venue), gate_id)
    db.commit()
    return GateToken(gate_id=gate_id, venue=venue, token=token)


@router.post("/venues/{venue}/gates/{gate_id}/token/revoke", response_model=GateOut)
def revoke_gate_token(*, venue: Name, gate_id: Name, access: Admin, db: DB) -> GateOut:
    """The gate's token is refused at once (401) until a rotation gives it a new one."""
    gate = ops.revoke_gate_token(db, ops.get_venue(db, venue), gate_id)
    db.commit()
    return GateOut(**gate)


@router.post("/venues/{venue}/gates/{gate_id}/disable", response_model=GateOut)
def disable_gate(*, venue: Name, gate_id: Name, access: Admin, db: DB) -> GateOut:
    """Refuse the gate's token with 403 "gate disabled"; nothing is deleted."""
    gate = ops.disable_gate(db, ops.get_venue(db, venue), gate_id)
    db.commit()
    return GateOut(**gate)


@router.post("/venues/{venue}/gates/{gate_id}/enable", response_model=GateOut)
def enable_gate(*, venue: Name, gate_id: Name, access: Admin, db: DB) -> GateOut:
    gate = ops.disable_gate(db, ops.get_venue(db, venue), gate_id, disabled=False)
    db.commit()
    return GateOut(**gate)


@router.post("/venues/{venue}/gates/{gate_id}/enrollment", response_model=EnrollmentCode, status_code=201)
def enrollment_code(*, venue: Name, gate_id: Name, access: Admin, db: DB) -> EnrollmentCode:
    """A one-time code (shown once, valid a day) that ``passgated enroll CODE --hub URL`` on the
    gate exchanges for its token; a new code replaces the previous one."""
    code, expires = ops.enrollment_code(db, ops.get_venue(db, venue), gate_id)
    db.commit()
    return EnrollmentCode(gate_id=gate_id, venue=venue, code=code, expires_at=expires)


@router.delete("/venues/{venue}/gates/{gate_id}", status_code=204)
def delete_gate(*, venue: Name, gate_id: Name, access: Admin, db: DB) -> Response:
    """Take the gate off the hub for good (its token void, its settings gone); its events stay,
    and its id is not given out again."""
    ops.delete_gate(db, ops.get_venue(db, venue), gate_id)
    db.commit()
    return Response(status_code=204)


# --- API keys and the audit log -----------------------------------------------------------------


@router.post("/apikeys", response_model=ApiKeySecret, status_code=201)
def create_api_key(*, body: ApiKeyIn, access: Admin, db: DB) -> ApiKeySecret:
    """A key with a role on venues this key administers (every venue: a hub-wide admin only);
    the answer holds its secret, which the hub cannot show again."""
    secret = apikeys.create(db, body.name, role=Role(body.role), venues=body.venues,
                            all_venues=body.all_venues, by=access)
    db.commit()
    return ApiKeySecret(name=body.name, key=secret)


@router.get("/apikeys", response_model=list[ApiKeyOut])
def list_api_keys(*, access: Admin, db: DB) -> list[ApiKeyOut]:
    """The keys whose every venue this key administers, revoked ones too."""
    return [ApiKeyOut(**k) for k in apikeys.list_keys(db, by=access)]


@router.post("/apikeys/{name}/rotate", response_model=ApiKeySecret, status_code=201)
def rotate_api_key(*, name: Name, access: Admin, db: DB) -> ApiKeySecret:
    """A new secret (shown once); the old one is refused at once."""
    secret = apikeys.rotate(db, name, by=access)
    db.commit()
    return ApiKeySecret(name=name, key=secret)


@router.post("/apikeys/{name}/revoke", response_model=ApiKeyOut)
def revoke_api_key(*, name: Name, access: Admin, db: DB) -> ApiKeyOut:
    """The key is refused at once (401); it stays listed, as revoked."""
    key = apikeys.revoke(db, name, by=access)
    db.commit()
    return ApiKeyOut(**key)


@router.post("/operators", response_model=OperatorCreated, response_model_exclude_none=True,
             status_code=201)
def create_operator(*, body: OperatorIn, access: Admin, db: DB) -> OperatorCreated:
    """A console operator on venues this key administers (every venue: a hub-wide admin only);
    the answer holds its authenticator URI (and a chosen password), which the hub cannot show again."""
    made = operators.create(db, body.name, role=Role(body.role), venues=body.venues,
                            all_venues=body.all_venues, password=body.password, by=access)
    db.commit()
    return OperatorCreated(name=made.name, totp_uri=made.totp_uri, password=made.password)


@router.get("/operators", response_model=list[OperatorOut])
def list_operators(*, access: Admin, db: DB) -> list[OperatorOut]:
    """The operators whose every venue this key administers."""
    return [OperatorOut(**o) for o in operators.list_operators(db, by=access)]


@router.post("/operators/{name}/unlock", response_model=OperatorOut)
def unlock_operator(*, name: Name, access: Admin, db: DB) -> OperatorOut:
    """End a lock-out after failed sign-ins now."""
    person = operators.unlock(db, name, by=access)
    db.commit()
    return OperatorOut(**person)


@router.post("/operators/{name}/disable", response_model=OperatorOut)
def disable_operator(*, name: Name, access: Admin, db: DB) -> OperatorOut:
    """Its sessions end at once; it cannot sign in until enabled."""
    person = operators.set_disabled(db, name, True, by=access)
    db.commit()
    return OperatorOut(**person)


@router.post("/operators/{name}/enable", response_model=OperatorOut)
def enable_operator(*, name: Name, access: Admin, db: DB) -> OperatorOut:
    person = operators.set_disabled(db, name, False, by=access)
    db.commit()
    return OperatorOut(**person)


@router.delete("/operators/{name}", status_code=204)
def delete_operator(*, name: Name, access: Admin, db: DB) -> Response:
    """Forget the operator: account, grants, sessions (the audit log keeps its name)."""
    operators.delete(db, name, by=access)
    db.commit()
    return Response(status_code=204)


@router.post("/purge", response_model=PurgeOut, response_model_exclude_none=True)
def purge(*, body: PurgeIn, access: Admin, db: DB) -> PurgeOut:
    """Remove now what retention says is due (the running hub does it every few minutes anyway)."""
    if body.venue is None:
        access.check_hub_wide(Role.ADMIN)
    else:
        access.check(body.venue, Role.ADMIN)
    target = ops.get_venue(db, body.venue) if body.venue is not None else None
    done = retention.purge_now(db, venue=target, dry_run=body.dry_run)
    db.commit()
    return PurgeOut(**done)


@router.get("/audit", response_model=list[AuditOut])
def audit_log(*, venue: Name | None = None,
              after: int = Query(0, ge=0, le=2**62, description="the last id received"),
              limit: int = Query(1000, ge=1, le=10000), access: Admin, db: DB) -> list[AuditOut]:
    """Changes by operators (API and CLI), oldest first: of the venues this key administers (a
    hub-wide admin also sees hub-wide changes), or of ``venue``."""
    if venue:
        access.check(venue, Role.ADMIN)
    target = ops.get_venue(db, venue) if venue else None
    rows = audit.entries(db, access.ids_with(Role.ADMIN), venue=target, after=after, limit=limit)
    return [AuditOut(**row) for row in rows]


@router.post("/venues/{venue}/passes/upload", response_model=PassesRecorded)
def record_passes(*, venue: Name, body: PassesIn, access: Operator, db: DB) -> PassesRecorded:
    """Record passes signed outside the hub (an offline issuer's), all or none: each must verify
    with a pass key the venue trusts; a refusal names the first pass and why."""
    done = offline.record_passes(db, ops.get_venue(db, venue), body.passes)
    db.commit()
    return PassesRecorded(**done)


@router.get("/venues/{venue}/denylists/{kind}/pending", response_model=PendingListOut)
def pending_list(*, venue: Name, kind: Name, access: Operator, db: DB) -> PendingListOut:
    """An offline venue's list at its next version, unsigned: sign it with ``passgate denylist
    sign`` where the deny-list key lives and upload both files it writes."""
    return PendingListOut(**json.loads(offline.pending(db, ops.get_venue(db, venue), kind).to_json()))


@router.post("/venues/{venue}/denylists/signed", response_model=SignedListOut)
def upload_signed_list(*, venue: Name, body: Annotated[bytes, Body(media_type="application/octet-stream")],
                       access: Operator, db: DB) -> SignedListOut:
    """A signed snapshot or delta of an offline venue's list: served to gates only once it
    verifies with the venue's deny-list key and holds exactly the pending change (the snapshot
    first, then its delta); anything else is refused with the reason."""
    done = offline.accept_signed(db, ops.get_venue(db, venue), body)
    db.commit()
    return SignedListOut(**done)
