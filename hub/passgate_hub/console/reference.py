"""The hub's front door: ``/`` leads to the console, ``/docs`` is the API's reference as a page.

The reference is drawn on the server from the hub's own OpenAPI schema (``/openapi.json``), so it
names every operation the hub serves with the role it needs, and needs no script: FastAPI's
interactive pages would load theirs from a CDN, which a hub on a closed network cannot reach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from .. import __version__
from ..auth import ACCESS
from . import HEADERS, PREFIX

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


@router.get("/")
def front_door() -> Response:
    return RedirectResponse(PREFIX, status_code=303)


def operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Each operation: method, path, what it does (its summary or first line), who may call it."""
    out = []
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            access = op.get(ACCESS)
            if access is not None:
                who = f"API key: {access['role']}" + (" of every venue" if access["hub_wide"] else "")
            elif path.startswith("/v1/gates/"):
                who = "the gate's token"
            else:
                who = "none (see what it does)"
            text = (op.get("description") or op.get("summary") or "").split("\n\n")[0].replace("``", "")
            out.append({"method": method.upper(), "path": path, "text": " ".join(text.split()),
                        "tag": (op.get("tags") or ["other"])[0], "who": who})
    return out


@router.get("/docs", response_class=HTMLResponse)
def reference(request: Request) -> Response:
    ops = operations(request.app.openapi())
    tags = sorted({op["tag"] for op in ops}, key=lambda t: (t != "gate", t))
    response = templates.TemplateResponse(request, "reference.html", {
        "version": __version__, "groups": [(tag, [op for op in ops if op["tag"] == tag]) for tag in tags]})
    response.headers.update(HEADERS)
    return response
