"""The console's events page (filters by gate, zone, pass, reason and time in the venue's time zone,
paging, CSV export that streams and is audited) and audit log page (admins only, their venues),
against a real hub fed over loopback HTTP."""

from __future__ import annotations

import csv
import html
import io
import re
import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Page, expect

from passgate_hub import audit, console, ops
from passgate_hub.scope import Role

from .server import HubServer
from .test_api import TIMEOUT, event, setup_venue
from .test_console import PASSWORD, SIZES, make_operator, sign_in
from .test_ingest_trust import admitted, beat, post


def arena_with_events(hub: HubServer) -> tuple[str, str]:
    """The arena (Europe/Berlin) with a passage at g1 and g3, and a refusal at g2; returns the
    admitted pass at g1 and the refused one."""
    tokens = setup_venue(hub, hub.admin())
    for gate in ("g1", "g2", "g3"):
        assert beat(hub, tokens[gate], gate, time.time()).status_code == 200
    at_g1, refused = uuid.uuid4().hex, uuid.uuid4().hex
    post(hub, tokens["g1"], "g1", admitted("g1", at_g1))
    post(hub, tokens["g3"], "g3", admitted("g3", uuid.uuid4().hex))
    post(hub, tokens["g2"], "g2", [event("arena-g2", "decision", direction="entry", pass_id=refused,
                                         decision="refuse", reason="expired", detail="Pass expired")])
    with hub.session() as s:
        ops.set_venue(s, ops.get_venue(s, "arena"), timezone="Europe/Berlin")
        s.commit()
    return at_g1, refused


def test_events_filter_page_and_export(browser_page: Page, hub: HubServer) -> None:
    at_g1, refused = arena_with_events(hub)
    totp = make_operator(hub, "evan", Role.VIEWER, venues=("arena",))
    sign_in(browser_page, hub, "evan", PASSWORD, totp.now())
    browser_page.click("nav >> text=Events")
    rows = browser_page.locator("#events tbody tr")
    expect(rows).to_have_count(5)  # two decisions and two redemptions, and the refusal
    now_there = datetime.now(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:")
    expect(rows.nth(0)).to_contain_text(now_there)  # the venue's clock, not the hub's
    browser_page.select_option("#zone", "vip")
    browser_page.click("form.filters button")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("arena-g3")
    browser_page.goto(f"{hub.url}/console/events?reason=expired")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text(refused)
    expect(rows.nth(0)).to_contain_text("Pass expired")
    browser_page.goto(f"{hub.url}/console/events?pass_id={at_g1.upper()}")
    expect(rows).to_have_count(2)
    later = datetime.now(ZoneInfo("Europe/Berlin")).replace(microsecond=0).isoformat()[:16]
    browser_page.goto(f"{hub.url}/console/events?since=2099-01-01T00:00")
    expect(browser_page.locator("#no-events")).to_have_text("No event matches.")
    browser_page.goto(f"{hub.url}/console/events?since=yesterday")
    expect(browser_page.locator("#error")).to_contain_text("2026-12-24T18:00")
    for size, viewport in SIZES.items():
        browser_page.set_viewport_size(viewport)
        browser_page.goto(f"{hub.url}/console/events?until={later}")
        browser_page.screenshot(path=f"/tmp/passgate-console-events-{size}.png", full_page=True)

    with browser_page.expect_download() as download:
        browser_page.goto(f"{hub.url}/console/events?zone=floor")
        browser_page.click("#export")
    text = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [r["gate_id"] for r in exported] == ["arena-g1", "arena-g1", "arena-g2"]
    assert exported[0]["pass_id"] == at_g1 and exported[0]["time"].startswith(now_there)
    with hub.session() as s:
        export = [e for e in audit.entries(s, None) if e["action"] == "events.export"]
    assert export[-1]["actor"] == "operator:evan" and export[-1]["detail"] == {"zone": "floor"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_export_streams_every_row_in_chunks(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "EXPORT_CHUNK", 2)
    arena_with_events(hub)
    totp = make_operator(hub, "ivy", Role.VIEWER, venues=("arena",))
    client = requests.Session()
    form = client.get(f"{hub.url}/console/login", timeout=TIMEOUT).text
    token = form.split('name="csrf" value="')[1].split('"')[0]
    client.post(f"{hub.url}/console/login", timeout=TIMEOUT, data={
        "name": "ivy", "password": PASSWORD, "code": totp.now(), "csrf": token})
    r = client.get(f"{hub.url}/console/events.csv", timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == 5  # three chunks of at most two
    assert client.get(f"{hub.url}/console/events.csv?since=never", timeout=TIMEOUT).status_code == 400
    assert requests.get(f"{hub.url}/console/events.csv", timeout=TIMEOUT).status_code == 403


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # its queries: on both beside it
def test_the_audit_log_page_is_for_admins_of_their_venues(browser_page: Page, hub: HubServer) -> None:
    arena_with_events(hub)
    with hub.session() as s:
        ops.create_venue(s, "stadium")
        s.commit()
    viewer = make_operator(hub, "vic", Role.VIEWER, venues=("arena",))
    sign_in(browser_page, hub, "vic", PASSWORD, viewer.now())
    browser_page.goto(f"{hub.url}/console/audit")
    expect(browser_page.locator("#error")).to_contain_text("the audit log is for admins")
    browser_page.context.clear_cookies()
    admin = make_operator(hub, "ada", Role.ADMIN, venues=("arena",))
    sign_in(browser_page, hub, "ada", PASSWORD, admin.now())
    browser_page.click("nav >> text=Audit log")
    table = browser_page.locator("#audit")
    expect(table).to_contain_text("venue.set")
    expect(table).to_contain_text("timezone: Europe/Berlin")
    expect(table).to_contain_text("console.sign_in")
    expect(table).not_to_contain_text("stadium")
    browser_page.goto(f"{hub.url}/console/audit?venue=stadium")
    expect(browser_page.locator("#error")).to_contain_text("you do not administer that venue")


def signed_in_client(hub: HubServer, name: str) -> requests.Session:
    totp = make_operator(hub, name, Role.VIEWER, venues=("arena",))
    client = requests.Session()
    form = client.get(f"{hub.url}/console/login", timeout=TIMEOUT).text
    token = form.split('name="csrf" value="')[1].split('"')[0]
    r = client.post(f"{hub.url}/console/login", timeout=TIMEOUT, data={
        "name": name, "password": PASSWORD, "code": totp.now(), "csrf": token})
    assert r.status_code == 200 and "/console/login" not in r.url
    return client


def test_a_time_filter_pages_in_the_gates_time_order(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events uploaded out of their gates' time order, with equal times and some outside the range:
    filtered by time, the pages (three rows each) and the export list exactly those in range, in
    time order (equal times in hub order), each once; without a time filter, hub order as before."""
    monkeypatch.setattr(console, "EVENT_PAGE", 3)
    monkeypatch.setattr(console, "EXPORT_CHUNK", 2)
    tokens = setup_venue(hub, hub.admin())
    with hub.session() as s:
        ops.set_venue(s, ops.get_venue(s, "arena"), timezone="UTC")
        s.commit()
    start = (int(time.time()) // 60 - 90) * 60  # a whole minute an hour and a half ago
    offsets = [50, 10, 30, 10, 75, -20, 30, 20, 0, 59.5, 60]  # in range: [0, 60)
    uploaded = []
    for i, offset in enumerate(offsets):
        gate = ("g1", "g2")[i % 2]
        pass_id = uuid.uuid4().hex
        post(hub, tokens[gate], gate, [event(f"arena-{gate}", "decision", pass_id=pass_id, decision="refuse",
                                             reason="expired", t=start + offset)])
        uploaded.append((offset, i, pass_id))
    expected = [pass_id for offset, _, pass_id in sorted(uploaded) if 0 <= offset < 60]
    client = signed_in_client(hub, "tess")
    since, until = (datetime.fromtimestamp(start + s, ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M")
                    for s in (0, 60))
    url, seen, pages = f"{hub.url}/console/events?since={since}&until={until}", [], 0
    while url:
        r = client.get(url, timeout=TIMEOUT)
        assert r.status_code == 200
        seen += re.findall(r"<code>([0-9a-f]{32})</code>", r.text)
        found = re.search(r'id="next" href="([^"]+)"', r.text)
        url = f"{hub.url}/console/events{html.unescape(found[1])}" if found else ""
        pages += 1
        assert pages < 10
    assert seen == expected and pages == 3  # 3 + 3 + 2 rows
    r = client.get(f"{hub.url}/console/events.csv?since={since}&until={until}", timeout=TIMEOUT)
    assert [row["pass_id"] for row in csv.DictReader(io.StringIO(r.text))] == expected
    r = client.get(f"{hub.url}/console/events.csv", timeout=TIMEOUT)
    assert [row["pass_id"] for row in csv.DictReader(io.StringIO(r.text))] == [p for _, _, p in uploaded]
