"""The operator console: server-rendered pages (Jinja2) under ``/console``, forms that work without
JavaScript.

Signing in (``operators.sign_in``) starts a session: a random token in an HttpOnly, SameSite=Strict
cookie (Secure over HTTPS), kept in the database only as its hash, ended after ``IDLE_S`` without
a request or ``MAX_S`` after it began, at sign-out, or when the operator is disabled. Every form
carries a CSRF token: before sign-in the same random value in a cookie and in the form (double
submit), after it one derived from the session's token (nothing more to store, the same in
every tab); a form without the right one is
refused (403) and changes nothing. A request whose ``Origin`` is another site is refused too.
What an operator sees is what its grants (``scope``) allow; everything done lands in the audit log.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import re
import secrets
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import fastapi
import segno
from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from passgate import wire
from passgate.batch import CSV_FIELDS, CSV_NAME
from passgate.qr import make_qr

from .. import audit, claims, fleet, operators, ops, scope, sealing
from ..auth import hash_secret
from ..dates import when_in
from ..models import ConsoleSession, Gate, Operator, Venue, Zone
from . import charts, fleet_table, sheets
from .fleet_table import ago

PREFIX = "/console"
SESSION_COOKIE = "passgate_session"
CSRF_COOKIE = "passgate_csrf"
IDLE_S = 30 * 60.0
MAX_S = 12 * 3600.0
SEEN_EVERY_S = 60.0  # a session's last_seen_at is written at most this often (one write a minute)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes a browser send "Origin: null" with forms
    "Cache-Control": "no-store",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


@dataclass(frozen=True)
class SignedIn:
    operator: Operator
    session: ConsoleSession
    scope: scope.Scope
    csrf: str  # what this session's forms carry


def _csrf_of(token: str) -> str:
    return hashlib.sha256(b"passgate console csrf\x00" + token.encode()).hexdigest()


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(HEADERS)
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def _same_origin(request: Request) -> bool:
    """A browser names the page a form came from in ``Origin``: it must be this hub (none: a client
    that is no browser, which carries no ambient cookie of ours either)."""
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def signed_in(request: Request, db: Session, *, now: float | None = None) -> SignedIn | None:
    """The operator this request's session cookie belongs to, if the session still holds."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    now = time.time() if now is None else now
    session = db.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == hash_secret(token)))
    if session is None:
        return None
    person = db.get(Operator, session.operator_id)
    if (person is None or person.disabled_at is not None or session.expires_at <= now
            or session.last_seen_at + IDLE_S <= now):
        db.delete(session)
        db.commit()
        return None
    if now - session.last_seen_at >= SEEN_EVERY_S:
        session.last_seen_at = now
        db.commit()
    return SignedIn(person, session, scope.load(db, person.principal_id), _csrf_of(token))


def _actor(request: Request, name: str) -> audit.Actor:
    return audit.Actor(name, request.client.host if request.client else None)


@router.get("", response_class=HTMLResponse)
def home(request: Request) -> Response:
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        grants = [{"venue": name, "role": str(role)} for name, role in sorted(who.scope.venues.items())]
        return _page(request, "home.html", operator=who.operator.name, hub_wide=who.scope.hub_wide,
                     grants=grants, csrf=who.csrf)




templates.env.filters["ago"] = ago


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(request: Request, venue: Annotated[str, Query(max_length=64)] = "",
               status: Annotated[str, Query(pattern="^(|alerting|" + "|".join(fleet.STATUSES) + ")$")] = "",
               q: Annotated[str, Query(max_length=64)] = "",
               sort: Annotated[str, Query(pattern="^(" + "|".join(fleet.SORTS) + ")$")] = "gate",
               order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
               offline_minutes: Annotated[int, Query(ge=1, le=10080)] = fleet.DEFAULT_OFFLINE_MINUTES,
               ) -> Response:
    """Every gate of the operator's venues with its health, alerts on top; filters and sorting are
    links and a GET form (no script needed)."""
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        venue_ids = None if who.scope.hub_wide is not None else set(who.scope.venue_ids.values())
        now = time.time()
        gates = fleet.rows(db, venue_ids, now=now)
        alerts = fleet.alerts(db, gates, venue_ids, offline_minutes=offline_minutes, now=now)
        alerting = {gate for alert in alerts for gate in alert.gates}
        shown = fleet.select_rows(gates, alerting, venue=venue or None, status=status or None, q=q, sort=sort,
                                  descending=order == "desc")
        counts = {s: sum(1 for g in gates if g.status == s) for s in fleet.STATUSES}
        zones = {name: ZoneInfo(tz) for name, tz in db.execute(select(Venue.name, Venue.timezone))}
        seen = {g.gate_id: when_in(g.last_seen, zones.get(g.venue, ZoneInfo("UTC"))) for g in shown}
        return _page(request, "fleet.html", operator=who.operator.name, csrf=who.csrf, now=now,
                     rows=fleet_table.rows(shown, now, seen), total=len(gates), counts=counts, alerts=alerts,
                     venues=sorted({g.venue for g in gates}),
                     filters={"venue": venue, "status": status, "q": q, "sort": sort, "order": order,
                              "offline_minutes": offline_minutes},
                     sorts=fleet.SORTS, statuses=("alerting", *fleet.STATUSES))


STREAM_POLL_S = 0.5  # how soon a count change reaches an open live page
STREAM_S = 600.0  # a stream ends after this (the browser opens the next one): sessions are re-read
STATIC = Path(__file__).with_name("static")


@router.get("/static/{name}")
def static(name: Annotated[str, fastapi.Path(pattern=r"^[a-z]+\.js$")]) -> Response:
    """The console's few scripts (``static/``): the pages work without them, they make pages live."""
    path = STATIC / name
    if not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(path.read_bytes(), media_type="text/javascript",
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def _venue_for(db: Session, who: SignedIn, name: str) -> Venue | None:
    """The venue ``name`` if the operator may see it; with no name, its first venue."""
    names = sorted(who.scope.venues) if who.scope.hub_wide is None else list(
        db.scalars(select(Venue.name).order_by(Venue.name)))
    if not name:
        name = names[0] if names else ""
    if name not in names:
        return None
    return ops.get_venue(db, name)


def _totals(zones: list[dict[str, Any]]) -> dict[str, int]:
    return {key: sum(z[key] for z in zones) for key in ("entries", "exits", "inside")}


def _live(db: Session, venue: Venue, now: float) -> dict[str, Any]:
    """What the live page shows of a venue now: counts per zone and in all, and the day's chart."""
    tz = ZoneInfo(venue.timezone)
    start, end = charts.day_bounds(tz, now)
    per_minute = ops.entries_per_minute(db, venue, start, end)
    zones = ops.zone_counts(db, venue)
    return {"zones": zones, "total": _totals(zones), "entries_today": sum(per_minute),
            "chart": charts.entries_per_minute_svg(per_minute, start, tz, now),
            "as_of": datetime.fromtimestamp(now, tz).strftime("%H:%M:%S %Z")}


@router.get("/live", response_class=HTMLResponse)
def live_page(request: Request, venue: Annotated[str, Query(max_length=64)] = "") -> Response:
    """Per zone, inside / entries / exits now, and entries per minute over the venue's day (drawn
    here as SVG); a script keeps both current over server-sent events."""
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        target = _venue_for(db, who, venue)
        if target is None:
            return _page(request, "refused.html", 403 if venue else 200, operator=who.operator.name,
                         csrf=who.csrf, why="no venue of yours by that name" if venue else "no venue yet")
        names = sorted(who.scope.venues) if who.scope.hub_wide is None else list(
            db.scalars(select(Venue.name).order_by(Venue.name)))
        return _page(request, "live.html", operator=who.operator.name, csrf=who.csrf, page="live",
                     venue=target.name, venues=names, timezone=target.timezone,
                     **_live(db, target, time.time()))


@router.get("/live/chart")
def live_chart(request: Request, venue: Annotated[str, Query(max_length=64)] = "") -> Response:
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        target = _venue_for(db, who, venue) if who is not None else None
        if target is None:
            return Response("", status_code=403)
        svg = _live(db, target, time.time())["chart"]
    return Response(svg, media_type="image/svg+xml", headers=HEADERS)


@router.get("/live/stream")
async def live_stream(request: Request, venue: Annotated[str, Query(max_length=64)] = "") -> Response:
    """Server-sent events: the venue's counts each time they change (polled every
    ``STREAM_POLL_S``), while the session holds; ends after ``STREAM_S``."""
    def read() -> dict[str, Any] | None:
        with request.app.state.sessions() as db:
            who = signed_in(request, db)
            target = _venue_for(db, who, venue) if who is not None else None
            if target is None:
                return None
            zones = ops.zone_counts(db, target)
            return {"zones": zones, "total": _totals(zones)}

    first = await run_in_threadpool(read)
    if first is None:
        return Response("", status_code=403)

    async def frames() -> Any:
        last: dict[str, Any] | None = None
        loop = asyncio.get_running_loop()
        ends, quiet = loop.time() + STREAM_S, 0.0
        counts: dict[str, Any] | None = first
        while counts is not None and loop.time() < ends:
            if counts != last:
                yield f"data: {json.dumps(counts)}\n\n"
                last, quiet = counts, 0.0
            elif quiet >= 15.0:
                yield ": still here\n\n"  # a vanished client is noticed at the next write
                quiet = 0.0
            await asyncio.sleep(STREAM_POLL_S)
            quiet += STREAM_POLL_S
            if await request.is_disconnected():
                return
            counts = await run_in_threadpool(read)

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


EVENT_PAGE = 100  # rows a page of the events list
EXPORT_CHUNK = 5000  # rows read at a time by the CSV export (it streams: any size)
EVENT_COLUMNS = ("seq", "time", "gate_id", "kind", "direction", "pass_id", "decision", "reason", "detail",
                 "entries", "latency_ms", "t", "hub_t")


@dataclass(frozen=True)
class EventFilter:
    gate: str = ""
    zone: str = ""
    pass_id: str = ""
    reason: str = ""
    since: str = ""  # datetime-local text, in the venue's time zone
    until: str = ""

    def query(self, tz: ZoneInfo) -> dict[str, Any]:
        """``ops.query_events``'s arguments (``ValueError`` for a time that is not one)."""
        def moment(text: str) -> float | None:
            return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() if text else None

        return {"gate_id": self.gate or None, "zone": self.zone or None,
                "pass_id": self.pass_id.lower() or None, "reason": self.reason or None,
                "since": moment(self.since), "until": moment(self.until), "by_time": self.by_time}

    @property
    def by_time(self) -> bool:
        """Filtered by time, pages go in the gates' time order (an index range); else in hub order."""
        return bool(self.since or self.until)


def _event_filter(gate: str, zone: str, pass_id: str, reason: str, since: str, until: str) -> EventFilter:
    return EventFilter(*(text.strip() for text in (gate, zone, pass_id, reason, since, until)))


Text64 = Annotated[str, Query(max_length=64)]


def _event_row(event: Any, tz: ZoneInfo) -> dict[str, Any]:
    return {"seq": event.seq, "time": datetime.fromtimestamp(event.t, tz).strftime("%Y-%m-%d %H:%M:%S"),
            "gate_id": event.gate_id, "kind": event.kind, "direction": event.direction,
            "pass_id": event.pass_id, "decision": event.decision, "reason": event.reason,
            "detail": event.detail, "entries": event.entries, "latency_ms": event.latency_ms,
            "t": event.t, "hub_t": event.hub_t}


@router.get("/events", response_class=HTMLResponse)
def events_page(request: Request, venue: Text64 = "", gate: Text64 = "", zone: Text64 = "",
                pass_id: Annotated[str, Query(max_length=32)] = "", reason: Text64 = "",
                since: Annotated[str, Query(max_length=32)] = "",
                until: Annotated[str, Query(max_length=32)] = "",
                after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                after_t: Annotated[float | None, Query(ge=-2**40, le=2**40)] = None) -> Response:
    """A venue's events, filtered by gate, zone, pass, reason and time (the gate's clock, in the
    venue's time zone), a page at a time (in hub order; filtered by time, in time order, the next
    page after ``after_t`` and ``after``); the same filters export as CSV."""
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        target = _venue_for(db, who, venue)
        if target is None:
            return _page(request, "refused.html", 403, operator=who.operator.name, csrf=who.csrf,
                         why="no venue of yours by that name")
        tz = ZoneInfo(target.timezone)
        chosen = _event_filter(gate, zone, pass_id, reason, since, until)
        error, rows = None, []
        try:
            rows = [_event_row(e, tz) for e in ops.query_events(
                db, target, after=after, after_t=after_t if chosen.by_time else None, limit=EVENT_PAGE,
                **chosen.query(tz))]
        except ValueError:
            error = "a time is written as 2026-12-24T18:00"
        return _page(request, "events.html", 400 if error else 200, operator=who.operator.name, csrf=who.csrf,
                     page="events", venue=target.name, venues=_venue_names(db, who), timezone=target.timezone,
                     rows=rows, filters=chosen, error=error, after=after,
                     next_after=rows[-1]["seq"] if len(rows) == EVENT_PAGE else None,
                     next_after_t=repr(rows[-1]["t"]) if len(rows) == EVENT_PAGE and chosen.by_time else None,
                     zones=list(db.scalars(select(Zone.name).where(Zone.venue_id == target.id)
                                           .order_by(Zone.name))))


@router.get("/events.csv")
def events_csv(request: Request, venue: Text64 = "", gate: Text64 = "", zone: Text64 = "",
               pass_id: Annotated[str, Query(max_length=32)] = "", reason: Text64 = "",
               since: Annotated[str, Query(max_length=32)] = "",
               until: Annotated[str, Query(max_length=32)] = "") -> Response:
    """Every event the filters keep, as CSV, streamed (recorded in the audit log: it names passes)."""
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        target = _venue_for(db, who, venue) if who is not None else None
        if who is None or target is None:
            return Response("not signed in, or not your venue\n", status_code=403, media_type="text/plain")
        tz = ZoneInfo(target.timezone)
        chosen = _event_filter(gate, zone, pass_id, reason, since, until)
        try:
            query = chosen.query(tz)
        except ValueError:
            return Response("a time is written as 2026-12-24T18:00\n", status_code=400,
                            media_type="text/plain")
        audit.act_as(db, _actor(request, f"operator:{who.operator.name}"))
        audit.record(db, "events.export", target.name, venues=[target],
                     **{k: v for k, v in chosen.__dict__.items() if v})
        db.commit()
        venue_id = target.id

    def lines() -> Any:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EVENT_COLUMNS)
        after, after_t = 0, None
        while True:
            with request.app.state.sessions() as db:
                venue_row = db.get(Venue, venue_id)
                assert venue_row is not None
                chunk = ops.query_events(db, venue_row, after=after, after_t=after_t, limit=EXPORT_CHUNK,
                                         **query)
            for event in chunk:
                row = _event_row(event, tz)
                writer.writerow([row[c] if row[c] is not None else "" for c in EVENT_COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(chunk) < EXPORT_CHUNK:
                return
            after, after_t = chunk[-1].seq, chunk[-1].t if chosen.by_time else None

    name = f"events-{target.name}-{datetime.now(tz):%Y%m%d-%H%M}.csv"
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


def _venue_names(db: Session, who: SignedIn) -> list[str]:
    if who.scope.hub_wide is not None:
        return list(db.scalars(select(Venue.name).order_by(Venue.name)))
    return sorted(who.scope.venues)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, venue: Text64 = "",
               after: Annotated[int, Query(ge=0, le=2**62)] = 0) -> Response:
    """The audit log of the venues the operator administers (every entry for a hub-wide admin),
    oldest first, a page at a time; times in each venue's time zone."""
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        ids = who.scope.ids_with(scope.Role.ADMIN)
        if ids == set():
            return _page(request, "refused.html", 403, operator=who.operator.name, csrf=who.csrf,
                         why="the audit log is for admins")
        chosen = None
        if venue:
            chosen = _venue_for(db, who, venue)
            if chosen is None or (ids is not None and chosen.id not in ids):
                return _page(request, "refused.html", 403, operator=who.operator.name, csrf=who.csrf,
                             why="you do not administer that venue")
        zones = {name: ZoneInfo(tz) for name, tz in db.execute(select(Venue.name, Venue.timezone))}
        entries = audit.entries(db, ids, venue=chosen, after=after, limit=EVENT_PAGE)
        for entry in entries:
            tz = zones.get(entry["venue"]) or ZoneInfo("UTC")
            entry["when"] = datetime.fromtimestamp(entry["at"], tz).strftime("%Y-%m-%d %H:%M:%S %Z")
        return _page(request, "audit.html", operator=who.operator.name, csrf=who.csrf, page="audit",
                     entries=entries, venue=venue,
                     next_after=entries[-1]["id"] if len(entries) == EVENT_PAGE else None,
                     venues=[v for v in _venue_names(db, who) if ids is None
                             or (v in who.scope.venues and who.scope.venues[v].covers(scope.Role.ADMIN))])


DENY_ACTIONS = {"revoke": ("revoked", False), "block": ("blocked", False), "unblock": ("blocked", True)}
MAX_ISSUE = 1000  # passes one form issues (a ZIP of their QR codes)


def _passes_page(request: Request, db: Session, who: SignedIn, target: Venue, *, pass_id: str = "",
                 message: str | None = None, error: str | None = None, status: int = 200) -> Response:
    tz = ZoneInfo(target.timezone)
    record = None
    if pass_id and error is None:
        try:
            record = ops.pass_record(db, target, pass_id)
        except ops.Invalid as exc:
            error, status = str(exc), 400
    if record is not None:
        record["events"] = [_event_row(e, tz) for e in record["events"]]
        if record["issued"]:
            for key in ("valid_from", "valid_until", "issued_at"):
                record["issued"][key] = datetime.fromtimestamp(record["issued"][key], tz).strftime(
                    "%Y-%m-%d %H:%M %Z")
            record["claim"] = claims.claim_state(db, target, pass_id)
            if record["claim"] is not None:
                for key in ("code_made_at", "claimed_at"):
                    record["claim"][key] = when_in(record["claim"][key], tz)
    role = who.scope.role_in(target.name)
    return _page(request, "passes.html", status, operator=who.operator.name, csrf=who.csrf, page="passes",
                 venue=target.name, venues=_venue_names(db, who), timezone=target.timezone, record=record,
                 pass_id=pass_id, message=message, error=error,
                 may_change=role is not None and role.covers(scope.Role.OPERATOR),
                 today=datetime.now(tz).strftime("%Y-%m-%dT%H:%M"))


@router.get("/passes", response_class=HTMLResponse)
def passes_page(request: Request, venue: Text64 = "",
                pass_id: Annotated[str, Query(max_length=64)] = "") -> Response:
    """Look a pass up (its record, the lists it is on, its history at every gate); revoke, block
    or unblock it with a reason; issue passes (operators)."""
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        target = _venue_for(db, who, venue)
        if target is None:
            return _page(request, "refused.html", 403, operator=who.operator.name, csrf=who.csrf,
                         why="no venue of yours by that name")
        return _passes_page(request, db, who, target, pass_id=pass_id)


def _operator_of(request: Request, db: Session, venue: str, csrf: str,
                 needed: scope.Role = scope.Role.OPERATOR) -> tuple[SignedIn, Venue] | Response:
    """The signed-in operator and the venue a form changes, or the page that refuses it: no
    session, a wrong CSRF token or another site (403), a venue not theirs or a role below
    ``needed`` (403)."""
    who = signed_in(request, db)
    if who is None:
        return RedirectResponse(f"{PREFIX}/login", status_code=303)
    if not (_same_origin(request) and csrf and secrets.compare_digest(csrf, who.csrf)):
        return _page(request, "refused.html", 403, operator=who.operator.name, csrf=who.csrf)
    target = _venue_for(db, who, venue)
    role = who.scope.role_in(target.name) if target is not None else None
    if target is None or role is None or not role.covers(needed):
        return _page(request, "refused.html", 403, operator=who.operator.name, csrf=who.csrf,
                     why=f"this needs the {needed} role on the venue")
    audit.act_as(db, _actor(request, f"operator:{who.operator.name}"))
    return who, target


@router.post("/passes/deny", response_class=HTMLResponse)
def passes_deny(request: Request, venue: Annotated[str, Form(max_length=64)],
                pass_id: Annotated[str, Form(max_length=64)],
                action: Annotated[str, Form(pattern="^(revoke|block|unblock)$")],
                reason: Annotated[str, Form(max_length=200)] = "",
                external: Annotated[bool, Form()] = False,
                csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    """Revoke, block or unblock one pass (every gate refuses or admits it again from its next sync)."""
    with request.app.state.sessions() as db:
        checked = _operator_of(request, db, venue, csrf)
        if isinstance(checked, Response):
            return checked
        who, target = checked
        kind, remove = DENY_ACTIONS[action]
        try:
            version, changed = ops.deny(db, target, kind, [pass_id], remove=remove, external=external,
                                        reason=reason.strip() or None)
        except (ops.Invalid, ops.NotFound) as exc:
            db.rollback()
            return _passes_page(request, db, who, target, pass_id=pass_id, error=str(exc), status=400)
        db.commit()
        done = {"revoke": "revoked", "block": "blocked", "unblock": "unblocked"}[action]
        message = (f"Pass {done}: the {kind} list is at version {version & 0xFFFFFFFF}; gates refuse or "
                   "admit it from their next sync." if changed
                   else f"Nothing changed: the pass was already {done}.")
        return _passes_page(request, db, who, target, pass_id=pass_id, message=message)


@router.post("/passes/issue")
def passes_issue(request: Request, venue: Annotated[str, Form(max_length=64)],
                 valid_from: Annotated[str, Form(max_length=32)],
                 valid_until: Annotated[str, Form(max_length=32)],
                 count: Annotated[int, Form(ge=1, le=MAX_ISSUE)] = 1,
                 product: Annotated[str, Form(max_length=64)] = "",
                 zones: Annotated[str, Form(max_length=512)] = "",
                 entries: Annotated[str, Form(max_length=6)] = "",
                 sheet: Annotated[str, Form(pattern="^(zip|pdf)$")] = "zip",
                 holder_bound: Annotated[bool, Form()] = False,
                 csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    """Issue passes with the venue's hub-held key: one pass comes back as a page with its QR code
    (a PNG and a printable PDF to download: the hub keeps no pass text to make them later),
    several as a ZIP of QR PNGs with passes.csv or (``sheet=pdf``) a printable PDF, 12 a page.
    ``holder_bound``: a one-time claim link for each pass instead (the holder's phone claims it
    in the wallet and the pass is signed for that phone): the same page, ZIP (claims.csv) or PDF."""
    with request.app.state.sessions() as db:
        checked = _operator_of(request, db, venue, csrf)
        if isinstance(checked, Response):
            return checked
        who, target = checked
        tz = ZoneInfo(target.timezone)
        try:
            start, end = (datetime.fromisoformat(t).replace(tzinfo=tz).timestamp()
                          for t in (valid_from, valid_until))
            limit = int(entries) if entries.strip() else None
            if limit is not None and not 1 <= limit <= wire.MAX_ENTRIES:
                raise ops.Invalid(f"entries is from 1 to {wire.MAX_ENTRIES}")
            given: dict[str, Any] = {
                "count": count, "valid_from": start, "valid_until": end, "entries": limit,
                "zones": [z.strip() for z in zones.split(",") if z.strip()],
                "product": product.strip() or None}
            table: list[tuple[str, ...]]  # a row of passes.csv (claims.csv) without its QR file
            if holder_bound:
                kid, codes = claims.issue_bound(db, target, **given)
                base = claims.request_base(request)
                table = list(claims.links(base, codes))  # pass id, claim link, code
            else:
                kid, issued = ops.issue(db, target, **given)
                table = list(issued)  # pass id, pass text
            passes = [(row[0], row[1]) for row in table]  # pass id, what its QR code holds
        except (ops.Conflict, sealing.SealingError) as exc:  # an offline venue; no sealing key
            db.rollback()
            return _passes_page(request, db, who, target, error=f"Not issued: {exc}", status=409)
        except ValueError as exc:  # ops.Invalid is one; so is a date fromisoformat cannot read
            db.rollback()
            why = str(exc) if isinstance(exc, ops.Invalid) else "a time is written as 2026-12-24T18:00"
            return _passes_page(request, db, who, target, error=f"Not issued: {why}", status=400)
        db.commit()
        if holder_bound and count == 1:
            (pass_id, url), = passes
            return _claim_page(request, who, target, pass_id, url, title="Claim link issued")
        if count == 1:
            (pass_id, text), = passes
            png = io.BytesIO()
            make_qr(text).save(png, kind="png", scale=8, border=4)
            pdf = sheets.pdf_sheet(passes, product.strip() or target.name)
            return _page(request, "issued.html", operator=who.operator.name, csrf=who.csrf, page="passes",
                         venue=target.name, pass_id=pass_id, text=text, kid=kid,
                         png=base64.b64encode(png.getvalue()).decode(), pdf=base64.b64encode(pdf).decode())
    if sheet == "pdf":
        name = f"passes-{target.name}-{datetime.now(tz):%Y%m%d-%H%M%S}.pdf"
        pdf = sheets.pdf_sheet(passes, product.strip() or target.name)
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store"})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(claims.CLAIMS_FIELDS if holder_bound else CSV_FIELDS)
        for row in table:
            pass_id = row[0]
            png = io.BytesIO()
            make_qr(row[1]).save(png, kind="png", scale=8, border=4)
            zipped.writestr(f"{pass_id}.png", png.getvalue())
            writer.writerow([*row, f"{pass_id}.png"])
        zipped.writestr(claims.CLAIMS_CSV if holder_bound else CSV_NAME, rows.getvalue())
    name = f"passes-{target.name}-{datetime.now(tz):%Y%m%d-%H%M%S}.zip"
    return Response(archive.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


def _claim_page(request: Request, who: SignedIn, target: Venue, pass_id: str, url: str, *,
                title: str, note: str = "") -> Response:
    """A claim link, shown once: its QR code (a PNG and a printable PDF to download) and its text."""
    png = io.BytesIO()
    make_qr(url).save(png, kind="png", scale=8, border=4)
    pdf = sheets.pdf_sheet([(pass_id, url)], f"{target.name}: claim with your phone")
    return _page(request, "claim.html", operator=who.operator.name, csrf=who.csrf, page="passes",
                 venue=target.name, pass_id=pass_id, url=url, title=title, note=note,
                 png=base64.b64encode(png.getvalue()).decode(), pdf=base64.b64encode(pdf).decode())


@router.post("/passes/claim-reset")
def passes_claim_reset(request: Request, venue: Annotated[str, Form(max_length=64)],
                       pass_id: Annotated[str, Form(max_length=64)],
                       csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    """A new one-time claim link for a holder-bound pass; the old link is void at once."""
    with request.app.state.sessions() as db:
        checked = _operator_of(request, db, venue, csrf)
        if isinstance(checked, Response):
            return checked
        who, target = checked
        try:
            code = claims.reset(db, target, pass_id)
        except (ops.Invalid, ops.NotFound, ops.Conflict) as exc:
            db.rollback()
            return _passes_page(request, db, who, target, pass_id=pass_id, error=f"No new link: {exc}",
                                status=409 if isinstance(exc, ops.Conflict) else 400)
        db.commit()
        base = claims.request_base(request)
        return _claim_page(request, who, target, pass_id.strip().lower(), claims.claim_url(base, code),
                           title="New claim link", note=f"The old link no longer works; {claims.STOLEN}.")


def _gates_page(request: Request, db: Session, who: SignedIn, target: Venue, *, error: str | None = None,
                status: int = 200, enrolment: dict[str, Any] | None = None) -> Response:
    tz = ZoneInfo(target.timezone)
    now = time.time()
    zone_names = {zone_id: name for zone_id, name in
                  db.execute(select(Zone.id, Zone.name).where(Zone.venue_id == target.id))}
    gates = []
    for gate in db.scalars(select(Gate).where(Gate.venue_id == target.id, Gate.deleted_at.is_(None))
                           .order_by(Gate.gate_id)):
        pending = gate.enroll_expires_at is not None and gate.enroll_expires_at > now
        gates.append({"gate_id": gate.gate_id,
                      "zone": zone_names.get(gate.zone_id) if gate.zone_id is not None else None,
                      "disabled": gate.disabled_at is not None, "has_token": gate.token_hash is not None,
                      "last_seen": gate.last_seen,
                      "token_changed": when_in(gate.token_changed_at or gate.created_at, tz),
                      "enroll_until": when_in(gate.enroll_expires_at, tz) if pending else None})
    role = who.scope.role_in(target.name)
    zones = list(db.scalars(select(Zone.name).where(Zone.venue_id == target.id).order_by(Zone.name)))
    return _page(request, "gates.html", status, operator=who.operator.name, csrf=who.csrf, page="gates",
                 venue=target.name, venues=_venue_names(db, who), gates=gates, zones=zones, error=error,
                 enrolment=enrolment, now=now, hub_url=str(request.base_url).rstrip("/"),
                 may_change=role is not None and role.covers(scope.Role.ADMIN))


@router.get("/gates", response_class=HTMLResponse)
def gates_page(request: Request, venue: Text64 = "") -> Response:
    """A venue's gates: create one and enroll it by a one-time code (no token is ever shown), give
    a gate a new code (its token is replaced when the code is used), disable and enable (admins)."""
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        target = _venue_for(db, who, venue)
        if target is None:
            return _page(request, "refused.html", 403, operator=who.operator.name, csrf=who.csrf,
                         why="no venue of yours by that name")
        return _gates_page(request, db, who, target)


@router.post("/gates", response_class=HTMLResponse)
def gates_change(request: Request, venue: Annotated[str, Form(max_length=64)],
                 action: Annotated[str, Form(pattern="^(create|enroll|disable|enable)$")],
                 gate_id: Annotated[str, Form(max_length=64)], zone: Annotated[str, Form(max_length=64)] = "",
                 csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    with request.app.state.sessions() as db:
        checked = _operator_of(request, db, venue, csrf, scope.Role.ADMIN)
        if isinstance(checked, Response):
            return checked
        who, target = checked
        gate_id = gate_id.strip()
        try:
            if action == "create":
                if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", gate_id):
                    raise ops.Invalid("a gate id is letters, digits, '.', '_' and '-'")
                ops.create_gate(db, target, gate_id, zone or None)  # its first token is never shown
            if action in ("create", "enroll"):
                code, expires = ops.enrollment_code(db, target, gate_id)
                enrolment = {"gate_id": gate_id, "code": code,
                             "until": when_in(expires, ZoneInfo(target.timezone))}
            else:
                ops.disable_gate(db, target, gate_id, disabled=action == "disable")
                enrolment = None
        except (ops.Invalid, ops.Conflict, ops.NotFound) as exc:
            db.rollback()
            return _gates_page(request, db, who, target, error=str(exc), status=400)
        db.commit()
        if enrolment is not None:
            link = f"passgate-enroll:{str(request.base_url).rstrip('/')}#{enrolment['code']}"
            png = io.BytesIO()
            segno.make_qr(link, error="m").save(png, kind="png", scale=6, border=4)
            enrolment["qr"] = base64.b64encode(png.getvalue()).decode()
        return _gates_page(request, db, who, target, enrolment=enrolment)


def _keys_page(request: Request, db: Session, who: SignedIn, target: Venue, *, error: str | None = None,
               message: str | None = None, status: int = 200) -> Response:
    tz = ZoneInfo(target.timezone)
    keys = [{"kid": k.kid, "purpose": k.purpose, "issuer": k.issuer, "held": k.has_private,
             "created": when_in(k.created_at, tz),
             "retired": when_in(k.retired_at, tz) if k.retired_at else None,
             "revoked": when_in(k.revoked_at, tz) if k.revoked_at else None}
            for k in ops.list_keys(db, target)]
    role = who.scope.role_in(target.name)
    return _page(request, "keys.html", status, operator=who.operator.name, csrf=who.csrf, page="keys",
                 venue=target.name, venues=_venue_names(db, who), keys=keys, error=error, message=message,
                 offline=target.offline, may_change=role is not None and role.covers(scope.Role.ADMIN))


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, venue: Text64 = "") -> Response:
    """A venue's keys: pass issuers the gates trust and the deny-list key; generate a hub-held
    issuing key, trust a public key (another issuer, or an offline venue's), retire or revoke one
    (admins)."""
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        target = _venue_for(db, who, venue)
        if target is None:
            return _page(request, "refused.html", 403, operator=who.operator.name, csrf=who.csrf,
                         why="no venue of yours by that name")
        return _keys_page(request, db, who, target)


@router.post("/keys", response_class=HTMLResponse)
def keys_change(request: Request, venue: Annotated[str, Form(max_length=64)],
                action: Annotated[str, Form(pattern="^(generate|upload|retire|revoke)$")],
                kid: Annotated[str, Form(max_length=64)] = "",
                issuer: Annotated[str, Form(max_length=128)] = "",
                public_pem: Annotated[str, Form(max_length=4096)] = "",
                csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    with request.app.state.sessions() as db:
        checked = _operator_of(request, db, venue, csrf, scope.Role.ADMIN)
        if isinstance(checked, Response):
            return checked
        who, target = checked
        try:
            if action in ("generate", "upload"):
                row = ops.add_key(db, target, generate=action == "generate", issuer=issuer.strip() or None,
                                  public_pem_text=public_pem if action == "upload" else None)
                message = f"Key {row.kid} added: the gates trust it from their next sync."
            elif action == "retire":
                ops.retire_key(db, target, kid)
                message = (f"Key {kid} retired: passes it issued before now stay valid, later ones are "
                           "refused.")
            else:
                ops.revoke_key(db, target, kid)
                message = f"Key {kid} revoked: every pass under it is refused from the gates' next sync."
        except (ValueError, LookupError, sealing.SealingError) as exc:  # Invalid, Conflict, NotFound
            db.rollback()
            return _keys_page(request, db, who, target, error=str(exc), status=400)
        db.commit()
        return _keys_page(request, db, who, target, message=message)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _login_page(request)


def _login_page(request: Request, *, error: str | None = None, name: str = "", status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = _page(request, "login.html", status, csrf=token, error=error, name=name)
    _set_cookie(request, response, CSRF_COOKIE, token, max_age=3600)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, name: Annotated[str, Form(max_length=64)],
          password: Annotated[str, Form(max_length=256)], code: Annotated[str, Form(max_length=16)],
          csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not (_same_origin(request) and csrf and cookie and secrets.compare_digest(csrf, cookie)):
        return _login_page(request, error="The form expired or came from elsewhere: sign in again.",
                           name=name, status=403)
    with request.app.state.sessions() as db:
        audit.act_as(db, _actor(request, "console"))
        try:
            person = operators.sign_in(db, name, password, code)
        except operators.SignInRefused as refused:
            db.commit()  # the failure counts
            return _login_page(request, error=str(refused), name=name, status=401)
        token = secrets.token_urlsafe(32)
        now = time.time()
        db.add(ConsoleSession(token_hash=hash_secret(token), operator_id=person.id, created_at=now,
                              last_seen_at=now, expires_at=now + MAX_S))
        db.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))  # others' old ones
        db.commit()
    response = RedirectResponse(PREFIX, status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=int(MAX_S))
    response.delete_cookie(CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    with request.app.state.sessions() as db:
        who = signed_in(request, db)
        if who is None:
            return RedirectResponse(f"{PREFIX}/login", status_code=303)
        if not (_same_origin(request) and csrf and secrets.compare_digest(csrf, who.csrf)):
            return _page(request, "refused.html", 403, operator=who.operator.name)
        audit.act_as(db, _actor(request, f"operator:{who.operator.name}"))
        audit.record(db, "console.sign_out", who.operator.name)
        db.delete(who.session)
        db.commit()
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response
