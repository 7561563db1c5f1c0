"""The console's live page against a real hub whose gates upload over loopback HTTP: counts per
zone and in all, entries per minute drawn as SVG on the server, and both kept current over
server-sent events (a passage uploaded shows without a reload); the venue's own time zone."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Page, expect

from passgate_hub import ops
from passgate_hub.console import charts
from passgate_hub.scope import Role

from .server import HubServer
from .test_api import TIMEOUT, setup_venue
from .test_console import PASSWORD, SIZES, make_operator, sign_in
from .test_ingest_trust import admitted, beat, post

SHOTS = Path("/tmp")


def test_the_live_page_counts_and_charts_passages_as_they_arrive(browser_page: Page, hub: HubServer) -> None:
    tokens = setup_venue(hub, hub.admin())
    for gate in ("g1", "g3"):
        assert beat(hub, tokens[gate], gate, time.time()).status_code == 200  # a fresh clock offset
    post(hub, tokens["g1"], "g1", admitted("g1", uuid.uuid4().hex))  # one in before the page opens
    with hub.session() as s:
        ops.set_venue(s, ops.get_venue(s, "arena"), timezone="Europe/Berlin")
        s.commit()
    totp = make_operator(hub, "lena", Role.VIEWER, venues=("arena",))
    sign_in(browser_page, hub, "lena", PASSWORD, totp.now())
    browser_page.click("nav >> text=Live")
    expect(browser_page.locator("h1")).to_have_text("Live: arena")
    expect(browser_page.locator("text=(Europe/Berlin)")).to_have_count(1)
    expect(browser_page.locator("#entries")).to_have_text("1")
    expect(browser_page.locator("#chart svg")).to_have_attribute("data-total", "1")
    expect(browser_page.locator("#stream")).to_have_text("live")

    for _ in range(3):
        post(hub, tokens["g1"], "g1", admitted("g1", uuid.uuid4().hex))
    post(hub, tokens["g3"], "g3", admitted("g3", uuid.uuid4().hex))
    pass_out = uuid.uuid4().hex
    post(hub, tokens["g1"], "g1", admitted("g1", pass_out, direction="exit"))
    # no reload: the stream brings the counts, the page fetches the chart again
    expect(browser_page.locator("#entries")).to_have_text("5")
    expect(browser_page.locator("#exits")).to_have_text("1")
    expect(browser_page.locator("#inside")).to_have_text("4")
    expect(browser_page.locator("#zones tr[data-zone=floor] .inside")).to_have_text("3")
    expect(browser_page.locator("#zones tr[data-zone=vip] .entries")).to_have_text("1")
    expect(browser_page.locator("#chart svg")).to_have_attribute("data-total", "5")
    title = browser_page.locator("#chart svg title").text_content() or ""
    assert re.fullmatch(r"Entries per minute today: 5 in all; busiest \d\d:\d\d with [1-5]", title), title
    for size, viewport in SIZES.items():
        browser_page.set_viewport_size(viewport)
        browser_page.screenshot(path=SHOTS / f"passgate-console-live-{size}.png", full_page=True)
    browser_page.goto("about:blank")  # the stream ends with the page (else the hub waits for it to stop)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # its queries: on both beside it
def test_the_live_page_shows_its_data_without_a_script_and_only_the_operators_venues(
    hub: HubServer, browser_page: Page
) -> None:
    tokens = setup_venue(hub, hub.admin())
    assert beat(hub, tokens["g1"], "g1", time.time()).status_code == 200
    post(hub, tokens["g1"], "g1", admitted("g1", uuid.uuid4().hex))
    with hub.session() as s:
        ops.create_venue(s, "stadium")
        s.commit()
    totp = make_operator(hub, "noscript", Role.VIEWER, venues=("arena",))
    context = browser_page.context.browser.new_context(java_script_enabled=False)  # type: ignore[union-attr]
    page = context.new_page()
    sign_in(page, hub, "noscript", PASSWORD, totp.now())
    page.goto(f"{hub.url}/console/live")
    expect(page.locator("#entries")).to_have_text("1")
    expect(page.locator("#chart svg")).to_have_attribute("data-total", "1")
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    for path in ("/console/live?venue=stadium", "/console/live/stream?venue=stadium",
                 "/console/live/chart?venue=stadium"):
        r = requests.get(f"{hub.url}{path}", cookies=cookies, timeout=TIMEOUT, stream=True)
        assert r.status_code == 403, path  # not hers
        r.close()
    context.close()


def test_the_day_is_the_venues_and_a_chart_says_what_it_shows() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = charts.day_bounds(berlin, 1_792_890_000.0)  # 2026-10-25, the clocks go back: 25 hours
    assert end - start == 25 * 3600
    per_minute = [0] * 1500
    per_minute[19 * 60 + 3] = 42
    svg = charts.entries_per_minute_svg(per_minute, start, berlin, start + 20 * 3600)
    assert 'data-total="42"' in svg and "busiest 18:03 with 42" in svg  # 19 h after a 25-hour day's start
    assert svg.count("<text") >= 9 and "stroke-dasharray" in svg  # hour marks and the line at now
    empty = charts.entries_per_minute_svg([0] * 1440, *charts.day_bounds(berlin, 1_800_000_000.0)[:1],
                                          berlin, 1_800_000_000.0)
    assert "Entries per minute today: 0 in all</title>" in empty and "<path" not in empty
