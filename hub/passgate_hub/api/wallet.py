"""The holder's side of the hub: ``POST /v1/wallet/claim`` (no credential but the claim code) and
the wallet page's static files at ``/wallet`` (package data ``passgate_hub/wallet/``, no auth).

A refused claim is JSON ``{"detail", "code"}`` with a stable code the wallet acts on (``claims``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from .. import audit, claims
from ..claims import ClaimRefused
from ..schemas import ClaimError, ClaimIn, ClaimOut, parse_body, parsed_by_route

router = APIRouter(prefix="/v1/wallet", tags=["wallet"])
pages = APIRouter(prefix=claims.WALLET_PATH, include_in_schema=False)
FILES = Path(__file__).parents[1] / "wallet"
MAX_CLAIM_BODY = 4096  # a code and a JWK are a few hundred bytes
_REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"model": ClaimError, "description": what} for status, what in (
        (404, "claim_unknown: no such code"), (409, "claim_taken: claimed already, from any device"),
        (410, "claim_revoked or claim_expired: the pass cannot be claimed any more"),
        (422, "claim_bad_key (the public key) or claim_bad_request (the body)"),
        (429, "claim_rate_limited: too many wrong codes from this address (see Retry-After)"),
        (503, "claim_cannot_sign: the venue has no usable issuing key on the hub now"))}


async def refused(_request: Request, exc: ClaimRefused) -> JSONResponse:
    """The app's handler of ``ClaimRefused``."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=exc.status, headers=headers)


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/claim", response_model=ClaimOut, openapi_extra=parsed_by_route(ClaimIn), responses=_REFUSALS)
async def claim(request: Request) -> Response:
    """Claim a holder-bound pass: the one-time code from its claim link and the wallet's P-256
    public key (a JWK) for the pass, signed now with that key inside. A code works once, from
    one device; wrong codes are limited per client address."""
    limiter: claims.Limiter = request.app.state.claim_limiter
    wait = limiter.wait_s(_client(request))
    if wait:
        raise ClaimRefused(429, "claim_rate_limited", f"too many wrong claim codes from this address: "
                                                      f"try again in {wait} s", retry_after=wait)
    body = await request.body()
    if len(body) > MAX_CLAIM_BODY:
        raise ClaimRefused(413, "claim_bad_request", f"body over {MAX_CLAIM_BODY} bytes")
    return await run_in_threadpool(_claim, request, body)


def _claim(request: Request, body: bytes) -> Response:
    try:
        given = parse_body(ClaimIn, body)
    except RequestValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        code = "claim_bad_key" if where.startswith("public_key") else "claim_bad_request"
        raise ClaimRefused(422, code, f"{where}: {first.get('msg', 'invalid')}") from None
    with request.app.state.sessions() as db:
        audit.act_as(db, audit.Actor("wallet", None))  # a holder, not an operator: no address kept
        try:
            done = claims.claim(db, given.code, given.public_key.model_dump())
        except ClaimRefused as exc:
            if exc.code == "claim_unknown":
                request.app.state.claim_limiter.wrong(_client(request))
            raise
        db.commit()
    return Response(json.dumps(done.answer()), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


# -- the page -----------------------------------------------------------------------------------

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(html|js|svg|webmanifest)")
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "svg": "image/svg+xml", "webmanifest": "application/manifest+json"}
HEADERS = {
    # the page's own files only; the claim goes to this hub (connect-src), the QR is drawn in-page
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
                               "worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # the service worker keeps the copy; the browser asks for changes
}


def _file(name: str) -> Response:
    if _NAME.fullmatch(name) is None or not (path := FILES / name).is_file():
        raise HTTPException(404, "no such wallet file")
    headers = dict(HEADERS)
    if name == "sw.js":
        # the worker lives at /wallet/sw.js; this lets it control /wallet (the page) as well
        headers["Service-Worker-Allowed"] = claims.WALLET_PATH
    return FileResponse(path, media_type=_TYPES[name.rsplit(".", 1)[1]], headers=headers)


@pages.get("")
@pages.get("/")
def page() -> Response:
    """The wallet page (``index.html``); a claim link carries its code in the fragment."""
    return _file("index.html")


@pages.get("/{name}")
def wallet_file(name: str) -> Response:
    return _file(name)
