"""The console's fleet page against a real hub whose gates beat over loopback HTTP: every gate with
its health, alerts on top (emergency, fault, offline, stale lists, double redemptions), sorting and
filtering by links and a GET form, an operator's own venues only, and 1,000 gates on one page."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import text

from passgate import wire
from passgate_hub import ops
from passgate_hub.models import Alert, Gate
from passgate_hub.scope import Role

from .server import HubServer
from .test_api import TIMEOUT, gate_client, setup_venue
from .test_console import PASSWORD, SIZES, make_operator, sign_in

SHOTS = Path("/tmp")


def beat(hub: HubServer, token: str, gate_id: str, state: str, **health: object) -> None:
    body = wire.dump(wire.Heartbeat(
        t=time.time(), version="0.1.0", protocol=wire.PROTOCOL_VERSION, backlog=int(health.pop("backlog", 0)),
        state=state, lists={"revoked": wire.ListHealth(version=7, age_s=120.0)},
        health={"journal_ok": True, "scanners": [{"source": "serial:/dev/ttyACM0", "connected": True}],
                "lists_stale": False, "fault": None, **health}))
    r = gate_client(token).post(f"{hub.url}/v1/gates/{gate_id}/heartbeat", json=body, timeout=TIMEOUT,
                                headers={wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)})
    assert r.status_code == 200, r.text


def fleet_of_arena(hub: HubServer) -> None:
    """g1 ready, g2 in emergency, g3 faulty with a scanner gone; g4 offline 10 minutes, g5 with
    stale lists, g6 never seen, g7 disabled; a double redemption; and another venue."""
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    for gate in ("g4", "g5", "g6", "g7"):
        r = admin.post(f"{hub.url}/v1/admin/venues/arena/gates", json={"gate_id": f"arena-{gate}"},
                       timeout=TIMEOUT)
        tokens[gate] = r.json()["token"]
    beat(hub, tokens["g1"], "arena-g1", "IDLE", backlog=3)
    beat(hub, tokens["g2"], "arena-g2", "EMERGENCY")
    beat(hub, tokens["g3"], "arena-g3", "FAULT", fault="Journal cannot record: disk full",
         scanners=[{"source": "serial:/dev/ttyACM0", "connected": False}])
    beat(hub, tokens["g4"], "arena-g4", "IDLE")
    beat(hub, tokens["g5"], "arena-g5", "IDLE", lists_stale=True)
    beat(hub, tokens["g7"], "arena-g7", "IDLE")
    with hub.session() as s:
        s.execute(text("UPDATE gates SET last_seen = last_seen - 600 WHERE gate_id = 'arena-g4'"))
        venue = ops.get_venue(s, "arena")
        ops.set_venue(s, venue, timezone="Europe/Berlin")
        ops.disable_gate(s, venue, "arena-g7", disabled=True)
        s.add(Alert(venue_id=venue.id, kind="double_redemption", pass_id="ab" * 16, event_id="e1", entries=1,
                    redemptions=[], apart_s=3.0, created_at=time.time()))
        stadium = ops.create_venue(s, "stadium")
        ops.create_gate(s, stadium, "stadium-g1")
        s.commit()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # its queries: on both beside it
def test_the_fleet_shows_every_gate_and_what_needs_a_person_first(browser_page: Page, hub: HubServer) -> None:
    fleet_of_arena(hub)
    totp = make_operator(hub, "olga", Role.VIEWER, venues=("arena",))
    sign_in(browser_page, hub, "olga", PASSWORD, totp.now())
    browser_page.click("nav >> text=Fleet")
    alerts = browser_page.locator("#alerts .alert")
    expect(alerts).to_have_count(5)
    assert [alerts.nth(i).get_attribute("data-kind") for i in range(5)] == [
        "emergency", "fault", "offline", "stale_lists", "double_redemption"]
    expect(alerts.nth(0)).to_contain_text("Emergency: free passage: 1 gate")
    expect(alerts.nth(1)).to_contain_text("Journal cannot record: disk full")
    expect(alerts.nth(2)).to_contain_text("Offline for more than 5 minutes: 1 gate")
    expect(alerts.nth(2)).to_contain_text("arena-g4")
    expect(alerts.nth(4)).to_contain_text("Passes used beyond their entries at arena: 1")
    expect(browser_page.locator("#summary")).to_have_text(
        "7 gates: 4 online, 1 offline, 1 never seen, 1 disabled.")  # the other venue's gate is not hers
    rows = browser_page.locator("#gates tbody tr")
    expect(rows).to_have_count(7)
    # alerting gates first, each by name; then the rest by name
    expect(rows.nth(0)).to_have_attribute("data-gate", "arena-g2")
    g1 = browser_page.locator("tr[data-gate=arena-g1]")
    expect(g1).to_contain_text("Ready")
    expect(g1).to_contain_text("online")
    expect(g1).to_contain_text("revoked v7 · 2 min")
    expect(g1).to_contain_text("✓ serial:/dev/ttyACM0")
    berlin = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d CES?T$")  # the venue's time zone
    expect(g1.locator("td").nth(5)).to_have_attribute("title", berlin)
    expect(browser_page.locator("tr[data-gate=arena-g3]")).to_contain_text("✗ serial:/dev/ttyACM0")
    expect(browser_page.locator("tr[data-gate=arena-g6]")).to_contain_text("never seen")
    assert "stadium" not in browser_page.content()
    for size, viewport in SIZES.items():
        browser_page.set_viewport_size(viewport)
        browser_page.screenshot(path=SHOTS / f"passgate-console-fleet-{size}.png", full_page=True)

    browser_page.click("#gates th >> text=Waiting to upload")  # sort by backlog, then the other way
    expect(browser_page).to_have_url(re.compile(r"sort=backlog&order=asc"))
    browser_page.click("#gates th >> text=Waiting to upload")
    expect(rows.nth(0)).to_have_attribute("data-gate", "arena-g1")  # the 3 waiting events
    browser_page.select_option("#status", "offline")
    browser_page.click("form.filters button")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_have_attribute("data-gate", "arena-g4")
    browser_page.fill("#q", "nothing-like-this")
    browser_page.select_option("#status", "")
    browser_page.click("form.filters button")
    expect(browser_page.locator("#no-gates")).to_have_text("No gate matches.")


def test_a_bad_filter_is_a_clear_refusal_and_signed_out_is_sent_to_sign_in(hub: HubServer) -> None:
    r = requests.get(f"{hub.url}/console/fleet", timeout=TIMEOUT, allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    r = requests.get(f"{hub.url}/console/fleet?sort=evil", timeout=TIMEOUT, allow_redirects=False)
    assert r.status_code == 422 and "sort" in r.text


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_thousand_gates_on_one_page(browser_page: Page, hub: HubServer) -> None:
    with hub.session() as s:
        venue = ops.create_venue(s, "metro")
        now = time.time()
        s.add_all(Gate(gate_id=f"metro-{n:04d}", venue_id=venue.id, token_hash=f"{n:064x}", config={},
                       created_at=now, last_seen=now - (n % 7) * 60, clock_offset_s=0.2,
                       health={"state": "IDLE", "backlog": n % 5, "version": "0.1.0",
                               "lists": {"revoked": {"version": 9, "age_s": 30.0}},
                               "health": {"scanners": [], "lists_stale": n % 97 == 0}})
                  for n in range(1000))
        s.commit()
    totp = make_operator(hub, "max", Role.VIEWER, venues=("metro",))
    sign_in(browser_page, hub, "max", PASSWORD, totp.now())
    started = time.monotonic()
    browser_page.goto(f"{hub.url}/console/fleet")
    expect(browser_page.locator("#gates tbody tr")).to_have_count(1000)
    print(f"\nfleet page of 1,000 gates: {time.monotonic() - started:.2f} s")  # a figure, not a check
    expect(browser_page.locator("#summary")).to_contain_text("1000 gates")
    expect(browser_page.locator(".alert-stale_lists")).to_contain_text("11 gates")
    browser_page.fill("#q", "metro-09")
    browser_page.click("form.filters button")
    expect(browser_page.locator("#gates tbody tr")).to_have_count(100)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # drawing, not queries
def test_what_a_gate_reports_is_shown_as_text_never_as_markup(browser_page: Page, hub: HubServer) -> None:
    """Its fault, scanner names, software version and list names come from the gate: a compromised
    gate must not be able to put markup or script on an operator's page."""
    tokens = setup_venue(hub, hub.admin())
    hostile = '<img src=x onerror="window.pwned=1"><b>'
    body = wire.dump(wire.Heartbeat(
        t=time.time(), version=f"1.0{hostile}", protocol=wire.PROTOCOL_VERSION, backlog=0, state="FAULT",
        lists={f"x{hostile}": wire.ListHealth(version=1, age_s=5.0)},
        health={"fault": f"disk {hostile}",
                "scanners": [{"source": f"serial:{hostile}", "connected": False}]}))
    r = gate_client(tokens["g1"]).post(f"{hub.url}/v1/gates/arena-g1/heartbeat", json=body, timeout=TIMEOUT,
                                       headers={wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)})
    assert r.status_code == 200, r.text
    totp = make_operator(hub, "eve", Role.VIEWER, venues=("arena",))
    sign_in(browser_page, hub, "eve", PASSWORD, totp.now())
    browser_page.goto(f"{hub.url}/console/fleet")
    row = browser_page.locator('#gates tr[data-gate="arena-g1"]')
    for cell in (f"disk {hostile}", f"serial:{hostile}", f"1.0{hostile}"):
        expect(row).to_contain_text(cell)
    assert row.locator("img").count() == 0 and row.locator("td b").count() == 1  # the gate's name only
    assert browser_page.evaluate("window.pwned") is None
