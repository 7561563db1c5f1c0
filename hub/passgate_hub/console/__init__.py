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
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import fastapi
from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import audit, fleet, operators, ops, scope
from ..auth import hash_secret
from ..models import ConsoleSession, Operator, Venue
from . import charts

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


def ago(seconds: float | None) -> str:
    """A duration as a person reads it: "12 s", "5 min", "3 h", "2 days"."""
    if seconds is None:
        return "–"
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def when(t: float | None) -> str:
    """A moment as a date a person reads (the hub's time zone, named)."""
    return "never" if t is None else time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


templates.env.filters["ago"] = ago
templates.env.filters["when"] = when


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
        return _page(request, "fleet.html", operator=who.operator.name, csrf=who.csrf, now=now,
                     gates=shown, total=len(gates), counts=counts, alerts=alerts,
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
