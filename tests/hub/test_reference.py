"""The hub's front door: ``/`` leads to the console; ``/docs`` lists every operation the hub
serves, from its own schema, with who may call it, as a page without scripts."""

from __future__ import annotations

import html
import re

import requests

from .server import HubServer
from .test_api import TIMEOUT


def test_the_root_leads_to_the_console_and_docs_list_every_operation(hub: HubServer) -> None:
    r = requests.get(f"{hub.url}/", allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    r = requests.get(f"{hub.url}/docs", timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<script" not in r.text and r.headers["x-content-type-options"] == "nosniff"
    found = re.findall(r"<tr><td><code>(.*?)</code></td><td>(.*?)</td><td>(.*?)</td></tr>", r.text)
    rows = {html.unescape(op).replace("\xa0", " "): (html.unescape(text), html.unescape(who))
            for op, text, who in found}
    schema = requests.get(f"{hub.url}/openapi.json", timeout=TIMEOUT).json()
    served = {f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item}
    assert set(rows) == served and len(served) > 40
    assert rows["GET /v1/admin/venues/{venue}/counts"][1] == "API key: viewer"
    assert rows["POST /v1/admin/venues"][1] == "API key: admin of every venue"
    assert rows["POST /v1/gates/{gate_id}/events"][1] == "the gate's token"
    assert rows["POST /v1/enroll"][1].startswith("none") and "one-time code" in rows["POST /v1/enroll"][0]
    assert all(text for text, _ in rows.values())  # each says what it does
