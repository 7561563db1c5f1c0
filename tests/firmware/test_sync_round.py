"""One request a quiet round (protocol 3's ``POST sync``): the heartbeat, the bundle only when it
changed and the first page of redemptions in one answer; an upload before it only when there are
events; more pages asked for only when the answer says so; and a hub without it served request by
request, as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import event
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from passgate_hub.api import gates as gate_api
from passgated.policy import Direction
from tests.hub.fixtures import db_url, hub
from tests.hub.server import HubServer, issue
from tests.hub.test_api import setup_venue

from .test_sync import Gate

__all__ = ["db_url", "hub"]


def counting(gate: Gate) -> list[str]:
    """Every request the gate's sync client makes to the hub, as "METHOD last-path-part"."""
    made: list[str] = []

    def hook(response: requests.Response, *args: object, **kwargs: object) -> None:
        made.append(f"{response.request.method} {response.request.path_url.split('?')[0].rsplit('/', 1)[-1]}")

    gate.sync.session.hooks["response"].append(hook)
    return made


@pytest.fixture
def two_gates(hub: HubServer, tmp_path: Path) -> Iterator[tuple[HubServer, requests.Session, Gate, Gate]]:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    g1, g2 = (Gate(tmp_path / name, f"arena-{name}", hub.url, tokens[name]) for name in ("g1", "g2"))
    yield hub, admin, g1, g2
    g1.close()
    g2.close()


def test_a_quiet_round_is_one_request_and_events_add_one(two_gates) -> None:
    hub, admin, g1, g2 = two_gates
    made = counting(g1)
    assert g1.sync.sync_once().ok and made == ["POST sync"]  # the first bundle came in its answer
    assert g1.lists.versions()["revoked"] >= 1 and g1.sync._etag
    made.clear()
    assert g1.sync.sync_once().ok and made == ["POST sync"]
    [ticket] = issue(hub, admin)
    assert g1.scan(ticket["text"]).admit
    made.clear()
    result = g1.sync.sync_once()
    assert result.ok and result.uploaded == 2 and made == ["POST events", "POST sync"]
    got = g2.sync.sync_once()  # the redemption reaches the other gate in its one request
    assert got.ok and got.redemptions == 1
    assert not g2.scan(ticket["text"]).admit
    status = g1.sync.status()
    assert status["last_error"] is None and abs(status["clock_offset_s"]) < 5


def test_more_redemptions_than_an_answer_holds_are_fetched_in_the_same_round(two_gates, monkeypatch) -> None:
    hub, admin, g1, g2 = two_gates
    monkeypatch.setattr(gate_api, "SYNC_REDEMPTIONS", 2)
    assert g1.sync.sync_once().ok and g2.sync.sync_once().ok
    tickets = issue(hub, admin, count=5)
    for ticket in tickets:
        assert g1.scan(ticket["text"]).admit
        assert g1.sync.sync_once().ok  # an upload (one ingest transaction) a passage: pages end between
    made = counting(g2)
    got = g2.sync.sync_once()
    assert got.ok and got.redemptions == 5
    assert made[0] == "POST sync" and made.count("GET redemptions") >= 2
    assert all(not g2.scan(t["text"], Direction.ENTRY).admit for t in tickets)


def test_a_hub_without_the_one_request_round_is_served_request_by_request(two_gates) -> None:
    hub, admin, g1, _ = two_gates
    # as a hub of protocol 2 answers: no such route
    hub.app.router.routes.insert(0, Route("/v1/gates/{gate_id}/sync", methods=["POST"],
                                          endpoint=lambda request: PlainTextResponse("Not Found", 404)))
    made = counting(g1)
    assert g1.sync.sync_once().ok
    assert made == ["POST sync", "POST heartbeat", "GET bundle", "GET redemptions"]
    made.clear()
    [ticket] = issue(hub, admin)
    assert g1.scan(ticket["text"]).admit
    assert g1.sync.sync_once().ok
    assert made[:4] == ["POST events", "POST heartbeat", "GET bundle", "GET redemptions"]
    assert "POST sync" not in made  # not asked again


def statements(hub: HubServer) -> list[str]:
    """Every SQL statement the hub runs from now on."""
    seen: list[str] = []

    @event.listens_for(hub.engine, "before_cursor_execute")
    def _record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    return seen


def test_an_unchanged_bundle_is_answered_without_reading_lists_keys_or_venues(two_gates) -> None:
    """From what the worker last read (for at most a second); a change this worker makes (a
    revocation) is seen by the very next round."""
    hub, admin, g1, _ = two_gates
    assert g1.sync.sync_once().ok and g1.sync.sync_once().ok
    seen = statements(hub)
    assert g1.sync.sync_once().ok
    touched = " ".join(seen).lower()
    assert "deny_lists" not in touched and "venues" not in touched and "issuer_keys" not in touched
    before = g1.lists.versions()["revoked"]
    [ticket] = issue(hub, admin)
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/revocations", json={"pass_ids": [ticket["pass_id"]]},
                   timeout=10)
    assert r.status_code == 200
    assert g1.sync.sync_once().ok
    assert g1.lists.versions()["revoked"] == before + 1
    assert bytes.fromhex(ticket["pass_id"]) in g1.lists.live["revoked"].current
