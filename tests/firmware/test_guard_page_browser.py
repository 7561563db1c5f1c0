"""The guard page in a real browser: what a guard beside the gate sees after each event.

Screenshots go to /tmp/passgate-guard-*.png for a human to check that the page reads from 3 m away.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from passgated.display import GuardDisplay

SCREENSHOTS = Path("/tmp")
STATUS = {"state": "IDLE", "gate_id": "G-07", "counts_today": {"admit": 0, "refuse": 0}}


def decision(decision: str, reason: str, text: str, direction: str = "entry") -> dict:
    return {"kind": "decision", "decision": decision, "reason": reason, "text": text,
            "direction": direction, "pass_id": "00112233445566778899aabbccddeeff", "t": time.time()}


def state(name: str, text: str = "") -> dict:
    return {"kind": "state", "state": name, "text": text, "t": time.time()}


def open_live(page: Page, display: GuardDisplay) -> None:
    """Load the page and wait until its event stream is connected (so no published event is missed)."""
    page.goto(display.url)
    expect(page.locator("#connection")).to_have_text("live")


def test_page_turns_from_admit_to_refused_with_the_reason(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    display = make_display()
    requests: list[str] = []
    browser_page.on("request", lambda request: requests.append(request.url))
    open_live(browser_page, display)
    view, headline, reason = (browser_page.locator(s) for s in ("#view", "#headline", "#reason"))
    expect(headline).to_have_text("READY")  # from /status, before any event
    expect(browser_page.locator("#gate")).to_have_text("G-07")

    display.publish(decision("admit", "admit", "Admitted"))
    expect(view).to_have_attribute("data-view", "admit")
    expect(headline).to_have_text("ADMIT")
    expect(browser_page.locator("#detail")).to_have_text("ENTRY")
    browser_page.screenshot(path=SCREENSHOTS / "passgate-guard-admit.png", animations="disabled")

    display.publish(decision("refuse", "wrong_zone", "Pass for zone B"))
    expect(view).to_have_attribute("data-view", "refuse")
    expect(headline).to_have_text("REFUSED")
    expect(reason).to_have_text("Pass for zone B")
    browser_page.screenshot(path=SCREENSHOTS / "passgate-guard-refused.png", animations="disabled")

    assert "00112233445566778899aabbccddeeff" not in browser_page.content()  # the pass id is never shown
    assert {urlsplit(url).netloc for url in requests} == {urlsplit(display.url).netloc}  # offline page


def test_a_late_status_answer_does_not_hide_a_newer_event(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    """The page asks /status when it connects; an event that overtakes the answer must stay on screen."""
    answer = threading.Event()

    def slow_status() -> dict:
        answer.wait(timeout=30)
        return STATUS

    display = make_display(status=slow_status)
    try:
        open_live(browser_page, display)
        display.publish(decision("refuse", "expired", "Pass expired"))
        expect(browser_page.locator("#headline")).to_have_text("REFUSED")
    finally:
        answer.set()
    expect(browser_page.locator("#gate")).to_have_text("G-07")  # the answer has been applied
    expect(browser_page.locator("#headline")).to_have_text("REFUSED")
    expect(browser_page.locator("#state")).to_have_text("IDLE")


@pytest.mark.parametrize(
    ("gate_state", "text", "view", "headline", "reason", "detail"),
    [
        ("EMERGENCY", "EMERGENCY — FREE PASSAGE", "emergency", "EMERGENCY", "FREE PASSAGE", ""),
        ("EMERGENCY", "Fire loop closed: reset to resume", "emergency", "EMERGENCY", "FREE PASSAGE",
         "Fire loop closed: reset to resume"),
        ("FAULT", "Out of order", "fault", "FAULT", "Out of order", ""),
        ("MAINTENANCE_FREE", "Maintenance: free passage", "maintenance", "MAINTENANCE", "FREE PASSAGE", ""),
        ("MAINTENANCE_LOCKED", "Maintenance: gate closed", "out-of-service", "OUT OF SERVICE",
         "Maintenance: gate closed", ""),
    ],
)
def test_special_states_have_their_own_screen_and_return_to_ready(
    browser_page: Page, make_display: Callable[..., GuardDisplay],
    gate_state: str, text: str, view: str, headline: str, reason: str, detail: str,
) -> None:
    display = make_display()
    open_live(browser_page, display)
    display.publish(decision("refuse", "used_up", "All entries used"))
    expect(browser_page.locator("#headline")).to_have_text("REFUSED")

    display.publish(state(gate_state, text))
    expect(browser_page.locator("#view")).to_have_attribute("data-view", view)
    expect(browser_page.locator("#headline")).to_have_text(headline)
    expect(browser_page.locator("#reason")).to_have_text(reason)
    expect(browser_page.locator("#detail")).to_have_text(detail)  # the state's text, unless it repeats
    expect(browser_page.locator("#state")).to_have_text(gate_state)
    browser_page.screenshot(path=SCREENSHOTS / f"passgate-guard-{view}.png", animations="disabled")

    display.publish(state("IDLE", "Ready"))
    expect(browser_page.locator("#view")).to_have_attribute("data-view", "ready")
    expect(browser_page.locator("#headline")).to_have_text("READY")
    expect(browser_page.locator("#reason")).to_have_text("")


def test_admit_with_a_guard_check_is_marked(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    display = make_display()
    open_live(browser_page, display)
    view = browser_page.locator("#view")
    display.publish({**decision("admit", "admit", "Check pass: deny list out of date"), "guard_check": True})
    expect(view).to_have_attribute("data-check", "yes")
    expect(browser_page.locator("#reason")).to_have_text("Check pass: deny list out of date")
    browser_page.screenshot(path=SCREENSHOTS / "passgate-guard-check.png", animations="disabled")
    display.publish(decision("admit", "admit", "Welcome"))
    expect(view).to_have_attribute("data-check", "no")


def test_page_says_reconnecting_and_recovers_when_the_daemon_restarts(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    first = make_display()
    open_live(browser_page, first)
    first.publish(decision("admit", "admit", "Admitted"))
    expect(browser_page.locator("#headline")).to_have_text("ADMIT")

    first.close()
    expect(browser_page.locator("#connection")).to_have_text("reconnecting…")
    expect(browser_page.locator("#banner")).to_be_visible()  # a stale ADMIT must not be trusted
    browser_page.screenshot(path=SCREENSHOTS / "passgate-guard-reconnecting.png", animations="disabled")

    second = make_display(port=urlsplit(first.url).port)
    second.publish(decision("refuse", "not_yet_valid", "Valid from 18:00", direction="exit"))
    expect(browser_page.locator("#connection")).to_have_text("live", timeout=15_000)
    expect(browser_page.locator("#banner")).to_be_hidden()
    expect(browser_page.locator("#headline")).to_have_text("REFUSED")  # the last event, sent on connect
    expect(browser_page.locator("#reason")).to_have_text("Valid from 18:00")
    expect(browser_page.locator("#detail")).to_have_text("EXIT")


def test_footer_shows_hub_sync_and_list_freshness(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    status = {**STATUS, "sync": {"last_success_age_s": 12.0, "backlog": 3},
              "lists": {"revoked": {"age_s": 600}, "blocked": {"age_s": 7200}}, "lists_stale": True}
    display = make_display(status=lambda: status)
    open_live(browser_page, display)
    footer = browser_page.locator("#sync")
    expect(footer).to_have_text("synced 12 s ago · 3 queued · lists 2 h old")
    expect(footer).to_have_attribute("data-stale", "yes")
