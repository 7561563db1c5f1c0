"""Every number a client can send the hub is bounded by its schema, so an out-of-range value is a
422 naming the field, never a database error (a 500): ``entries = 2**63`` was one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine

from passgate import wire
from passgate_hub.app import create_app

from .server import HubServer
from .test_api import TIMEOUT, setup_venue


def _resolve(schema: dict[str, Any], node: Any) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return _resolve(schema, schema["components"]["schemas"][name])
    return node


Found = list[tuple[str, dict[str, Any]]]


def _numbers(schema: dict[str, Any], node: Any, where: str, seen: set[str]) -> Found:
    """Every integer or number schema under ``node`` (refs followed once), with where it is."""
    if isinstance(node, dict) and "$ref" in node:
        if node["$ref"] in seen:
            return []
        seen = seen | {node["$ref"]}
    node = _resolve(schema, node)
    if not isinstance(node, dict):
        return []
    found = [(where, node)] if node.get("type") in ("integer", "number") else []
    for key in ("anyOf", "oneOf", "allOf"):
        for option in node.get(key, []):
            found += _numbers(schema, option, where, seen)
    for name, prop in node.get("properties", {}).items():
        found += _numbers(schema, prop, f"{where}.{name}", seen)
    if "items" in node:
        found += _numbers(schema, node["items"], f"{where}[]", seen)
    return found


def request_numbers() -> Found:
    """Every number in a request of the hub's API: path and query parameters and bodies."""
    schema = create_app(create_engine("sqlite://")).openapi()
    found: Found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            route = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                found += _numbers(schema, parameter["schema"], f"{route} {parameter['name']}", set())
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body:
                found += _numbers(schema, body["schema"], f"{route} body", set())
    return found


def test_every_integer_a_client_sends_has_bounds() -> None:
    numbers = request_numbers()
    integers = [(where, n) for where, n in numbers if n["type"] == "integer"]
    assert len(integers) >= 10  # the walk reaches query parameters and bodies
    assert any("entries" in where for where, _ in integers)
    unbounded = [where for where, n in integers
                 if ("maximum" not in n and "exclusiveMaximum" not in n)
                 or ("minimum" not in n and "exclusiveMinimum" not in n)]
    assert not unbounded, unbounded
    # PostgreSQL's bigint holds what a client may send
    too_big = [where for where, n in integers if n.get("maximum", 0) >= 2**63 or n.get("minimum", 0) < -2**63]
    assert not too_big, too_big


def test_a_number_out_of_range_is_a_422_naming_it(hub: HubServer) -> None:
    admin = hub.admin()
    setup_venue(hub, admin)
    body = {"count": 1, "valid_from": 0, "valid_until": 2**31, "zones": ["floor"]}
    for entries in (2**63, 2**31, 0):
        r = admin.post(f"{hub.url}/v1/admin/venues/arena/passes", json={**body, "entries": entries},
                       timeout=TIMEOUT)
        assert r.status_code == 422, (entries, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "entries"]
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/passes", json={**body, "entries": wire.MAX_ENTRIES},
                   timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    for query in ("after=9223372036854775808", "limit=100000", "since=nan", "until=inf"):
        r = admin.get(f"{hub.url}/v1/admin/venues/arena/events?{query}", timeout=TIMEOUT)
        assert r.status_code == 422, (query, r.text)
