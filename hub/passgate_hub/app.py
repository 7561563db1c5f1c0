"""The hub's ASGI app: ``create_app(engine)``, served by uvicorn (``passgate-hub serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import (
    __version__,
    auth,
    claims,
    console,
    db,
    denylists,
    ops,
    published,
    retention,
    rounds,
    scope,
    sealing,
)
from .api import admin, gates, wallet
from .console import reference
from .schemas import PARSED_BY_ROUTE

log = logging.getLogger(__name__)
MAX_BODY = 4 * 1024 * 1024  # a full batch of 1,000 events is ~300 KB


class BodyLimit:
    """Refuse bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse({"detail": f"body over {self.max_bytes} bytes"}, status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, f"body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


def _error(status: int):  # type: ignore[no-untyped-def]
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        # ``args[0]``, not ``str()``: a KeyError's str() quotes it, and stripping quotes would cut
        # the closing quote of a message such as "got 'maybe'"
        return JSONResponse({"detail": str(exc.args[0] if exc.args else exc)}, status_code=status)
    return handler


RETRY_AFTER_S = 5


async def _database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
    """503 with Retry-After when the database cannot be reached or cut the connection (a gate
    tries again at its next round); one line in the log, not a traceback."""
    log.error("%s %s: database unavailable: %s", request.method, request.url.path,
              db.describe_error(exc, str(request.app.state.engine.url)))
    return JSONResponse({"detail": "the hub's database is unavailable; try again shortly"},
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


async def _cannot_sign(request: Request, exc: sealing.SealingError) -> JSONResponse:
    """503 naming why the hub cannot sign (its sealing key is missing or wrong); whatever does not
    sign keeps working."""
    log.error("%s %s: cannot sign: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": f"the hub cannot sign: {exc}"}, status_code=503)


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming where and what, without echoing the input: it may be huge, or hold values
    (inf, NaN) JSON cannot carry, which made FastAPI's own handler answer 500."""
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
              for e in exc.errors()[:20]]
    return JSONResponse({"detail": errors}, status_code=422)


ACCESS = auth.ACCESS


class Hub(FastAPI):
    """FastAPI with the schemas of the bodies that routes parse themselves in its OpenAPI, and
    each admin operation's requirement (role, hub-wide) as ``x-passgate-access``: read from the
    dependency that enforces it, so the schema cannot say other than the hub does."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = super().openapi()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in PARSED_BY_ROUTE:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                nested = schema.pop("$defs", {})
                if schemas.setdefault(model.__name__, schema) != schema:
                    raise RuntimeError(f"two OpenAPI schemas are named {model.__name__}")
                for name, part in nested.items():
                    # a wire message nested here that a declared route also uses (a SyncRequest's
                    # Heartbeat) is there already, as FastAPI writes it: the same derived model
                    schemas.setdefault(name, part)
            for path, route in auth.served_routes(self):
                if (requirement := auth.requirement_of(route)) is not None:
                    for method in route.methods or ():
                        document["paths"][path][method.lower()][ACCESS] = requirement.openapi()
        return self.openapi_schema  # type: ignore[return-value]


def check_scoped(app: FastAPI, prefix: str = admin.router.prefix) -> None:
    """Refuse to build a hub with an admin route that declares no requirement (``auth.require``):
    it would serve any valid key, whatever its venues and role."""
    for path, route in auth.served_routes(app):
        if path.startswith(prefix) and auth.requirement_of(route) is None:
            methods = " ".join(sorted(route.methods or ()))
            raise RuntimeError(f"admin route {methods} {path} declares no role (give it an "
                               "access parameter: auth.Viewer, Operator, Admin or HubAdmin)")


@contextlib.asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[None]:
    """While the app serves, its retention purge runs in rounds (``retention.Purger``), quiet
    heartbeats are written in batches (``rounds.Beats``) and what quiet rounds are answered from is
    read again (``rounds.refreshing``).

    What the process built to start (modules, models, the app: a few hundred thousand objects) is
    set aside from the garbage collector's full passes first: each pass walked all of it, about a
    tenth of the hub's CPU under ingest load (``benchmarks/hub_ingest.py``). Given back when it
    stops (an app served in a process that goes on, as in tests)."""
    gc.freeze()
    task = asyncio.create_task(app.state.purger.run())
    try:
        state = app.state
        async with state.beats.flushing(state.sessions), rounds.refreshing(functools.partial(
                rounds.refresh, state.sessions, state.vectors, state.known, state.freshness)):
            yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.unfreeze()


def create_app(engine: Engine, *, max_body: int = MAX_BODY,
               purge_every_s: float = retention.PURGE_EVERY_S, lists_dir: str | None = None,
               lists_url: str | None = None, public_url: str | None = None) -> FastAPI:
    """The app over an engine whose database is already migrated (see ``db.migrate``). Served
    with its lifespan, it purges as each venue's retention says (``retention.Purger``); it
    publishes deny-list files in ``lists_dir`` (``published.configured``). Claim links start with
    ``public_url`` (else ``$PASSGATE_HUB_PUBLIC_URL``, else the URL a request came in on)."""
    app = Hub(title="passgate hub", version=__version__, docs_url=None, redoc_url=None, lifespan=_serving)
    app.state.engine = engine
    app.state.sessions = db.session_factory(engine)
    app.state.purger = retention.Purger(app.state.sessions, every_s=purge_every_s)
    app.state.snapshots = denylists.SnapshotCache()
    app.state.freshness = denylists.FreshnessCache()
    app.state.published = published.configured(engine, lists_dir, lists_url)
    app.state.vectors = rounds.VersionVectors()
    app.state.known = rounds.Known()
    app.state.beats = rounds.Beats()
    app.state.public_url = claims.public_url(public_url)
    app.state.claim_limiter = claims.Limiter()
    app.state.vectors.watch(app.state.sessions, app.state.known.forget)
    app.include_router(gates.router)
    app.include_router(gates.enroll_router)
    app.include_router(gates.files_router)
    app.include_router(admin.router)
    app.include_router(console.router)
    app.include_router(reference.router)
    app.include_router(wallet.router)
    app.include_router(wallet.pages)
    check_scoped(app)
    handlers: dict[Any, Any] = {RequestValidationError: _invalid, OperationalError: _database_unavailable,
                                scope.Forbidden: _error(403), ops.NotFound: _error(404),
                                ops.Conflict: _error(409), ops.Invalid: _error(422),
                                denylists.DenyListChangeError: _error(409),
                                sealing.SealingError: _cannot_sign, claims.ClaimRefused: wallet.refused}
    for exc, handler in handlers.items():
        app.add_exception_handler(exc, handler)
    app.add_middleware(BodyLimit, max_bytes=max_body)
    return app


def from_env() -> FastAPI:
    """App factory for uvicorn worker processes: the database URL comes from the environment."""
    return create_app(db.make_engine())
