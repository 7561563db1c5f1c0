"""The guard page in a real browser: what a guard beside the gate sees after each event.

Screenshots go to /tmp/passgate-guard-*.png for a human to check that the page reads from 3 m away.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
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
    expect(browser_page.locator("#state")).to_have_text("Refused")  # the footer agrees with the screen


@pytest.mark.parametrize(
    ("gate_state", "text", "view", "headline", "reason", "detail", "words"),
    [
        ("EMERGENCY", "EMERGENCY — FREE PASSAGE", "emergency", "EMERGENCY", "FREE PASSAGE", "",
         "Emergency: free passage"),
        ("EMERGENCY", "Fire loop closed: reset to resume", "emergency", "EMERGENCY", "FREE PASSAGE",
         "Fire loop closed: reset to resume", "Emergency: free passage"),
        ("FAULT", "Out of order", "fault", "FAULT", "Out of order", "", "Fault: out of service"),
        ("MAINTENANCE_FREE", "Maintenance: free passage", "maintenance", "MAINTENANCE", "FREE PASSAGE", "",
         "Maintenance: free passage"),
        ("MAINTENANCE_LOCKED", "Maintenance: gate closed", "out-of-service", "OUT OF SERVICE",
         "Maintenance: gate closed", "", "Maintenance: closed"),
    ],
)
def test_special_states_have_their_own_screen_and_return_to_ready(
    browser_page: Page, make_display: Callable[..., GuardDisplay],
    gate_state: str, text: str, view: str, headline: str, reason: str, detail: str, words: str,
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
    expect(browser_page.locator("#state")).to_have_text(words)  # written for a person, never MAINTENANCE_FREE
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


def admitted(product: str, admitted_so_far: int) -> dict:
    return {**decision("admit", "admit", "Welcome"), "product": product,
            "today": {"admitted": admitted_so_far, "refused": 1, "entries": 0, "exits": 0}}


def test_the_gate_name_and_the_last_decisions_come_with_the_page(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    """A guard who looked away sees what happened; the gate's name is in the page itself, so it is
    there before the page's script or /status have said anything."""
    display = make_display(gate_name="north-1", status=lambda: {"state": "IDLE"})
    for n in range(6):
        display.publish({**decision("refuse", "expired", f"Pass expired {n}"), "t": 1_800_000_000.0 + n})
    display.publish(admitted("Season ticket", 1))
    source = requests.get(display.url, timeout=10).text
    assert '<b id="gate">north-1</b>' in source and "<title>north-1 · passgate</title>" in source
    assert "00112233445566778899aabbccddeeff" not in source  # the pass ids of the decisions
    browser_page.goto(display.url)
    rows = browser_page.locator("#recent li")
    expect(rows).to_have_count(5)
    expect(rows.nth(0)).to_contain_text("ADMIT")
    expect(rows.nth(0)).to_contain_text("ENTRY · Season ticket")
    expect(rows.nth(1)).to_contain_text("REFUSED")
    expect(rows.nth(1)).to_contain_text("Pass expired 5")  # newest first: 0 and 1 scrolled away
    expect(rows.nth(4)).to_contain_text("Pass expired 2")
    expect(browser_page.locator("#headline")).to_have_text("ADMIT")  # the last decision, at once
    expect(browser_page.locator("#product")).to_have_text("Season ticket")


def test_each_decision_adds_a_row_updates_the_counts_and_sounds_its_own_sound(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    display = make_display(gate_name="north-1")
    open_live(browser_page, display)
    expect(browser_page.locator("#recent li")).to_have_text(["No decisions yet"])
    body = browser_page.locator("body")
    display.publish(admitted("Day pass", 7))
    expect(browser_page.locator("#recent li")).to_have_count(1)
    expect(browser_page.locator("#today")).to_have_text("Today: 7 admitted  1 refused  0 in  0 out")
    expect(body).to_have_attribute("data-last-sound", re.compile("^admit:"))
    display.publish({"kind": "counts", "today": {"admitted": 7, "refused": 1, "entries": 1, "exits": 0}})
    expect(browser_page.locator("#today")).to_contain_text("1 in")
    expect(browser_page.locator("#headline")).to_have_text("ADMIT")  # a count changes no screen
    display.publish({**decision("refuse", "revoked", "Pass cancelled: send to the box office"),
                     "today": {"admitted": 7, "refused": 2, "entries": 1, "exits": 0}})
    expect(body).to_have_attribute("data-last-sound", re.compile("^refuse:"))
    expect(browser_page.locator("#recent li").nth(0)).to_contain_text("REFUSED")
    expect(browser_page.locator("#recent li").nth(1)).to_contain_text("Day pass")

    sound = browser_page.locator("#sound")
    expect(sound).to_have_text("Sound on")
    sound.click()  # the guard turns it off; the page remembers across a reload
    expect(sound).to_have_text("Sound off")
    heard = body.get_attribute("data-last-sound")
    display.publish(admitted("Day pass", 8))
    expect(browser_page.locator("#recent li")).to_have_count(3)
    assert body.get_attribute("data-last-sound") == heard
    browser_page.reload()
    expect(browser_page.locator("#sound")).to_have_text("Sound off")


def test_a_gate_set_to_no_sound_starts_silent(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    display = make_display(sound=False)
    open_live(browser_page, display)
    expect(browser_page.locator("#sound")).to_have_text("Sound off")
    display.publish(admitted("Day pass", 1))
    expect(browser_page.locator("#headline")).to_have_text("ADMIT")
    assert browser_page.locator("body").get_attribute("data-last-sound") is None


def test_the_page_speaks_the_gates_language(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    display = make_display(language="de", gate_name="nord-1")
    browser_page.goto(display.url)
    expect(browser_page.locator("#connection")).to_have_text("verbunden")  # German for "live"
    assert browser_page.locator("html").get_attribute("lang") == "de"
    expect(browser_page.locator("#headline")).to_have_text("BEREIT")
    expect(browser_page.locator("#state")).to_have_text("Bereit")
    display.publish(decision("refuse", "expired", "Pass expired"))
    expect(browser_page.locator("#headline")).to_have_text("ABGELEHNT")
    expect(browser_page.locator("#reason")).to_have_text("Ausweis abgelaufen")
    expect(browser_page.locator("#state")).to_have_text("Abgelehnt")
    display.publish(state("MAINTENANCE_FREE", "Maintenance: free passage"))
    expect(browser_page.locator("#headline")).to_have_text("WARTUNG")
    expect(browser_page.locator("#reason")).to_have_text("FREIER DURCHGANG")
    expect(browser_page.locator("#state")).to_have_text("Wartung: freier Durchgang")
    expect(browser_page.locator("#detail")).to_have_text("")  # no English under the German words
    display.publish(state("FAULT", "Out of order: please use another gate"))
    expect(browser_page.locator("#headline")).to_have_text("STÖRUNG")
    expect(browser_page.locator("#reason")).to_have_text("Störung: außer Betrieb")
    expect(browser_page.locator("#why")).to_have_text("Out of order: please use another gate")  # small print
    expect(browser_page.locator("#recent li").nth(0)).to_contain_text("ABGELEHNT")
    browser_page.screenshot(path=SCREENSHOTS / "passgate-guard-de-fault.png", animations="disabled")


@pytest.mark.parametrize(("width", "height"), [(1024, 600), (390, 844)])
def test_everything_a_guard_needs_fits_a_small_monitor_and_a_phone(
    browser_page: Page, make_display: Callable[..., GuardDisplay], width: int, height: int
) -> None:
    browser_page.set_viewport_size({"width": width, "height": height})
    display = make_display(gate_name="north-1")
    open_live(browser_page, display)
    for n in range(5):
        display.publish(admitted("Season ticket, category A", n + 1))
    display.publish(decision("refuse", "already_inside", "Already inside since 18:02"))
    expect(browser_page.locator("#reason")).to_have_text("Already inside since 18:02")
    # the layout as it stays, not as the arrival animation (which scales it up to full size) left it
    browser_page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")
    for part in ("#headline", "#reason", "#recent li >> nth=4", "#today", "#gate", "#state"):
        box = browser_page.locator(part).bounding_box()
        assert box is not None and box["width"] > 0, part
        assert box["x"] >= 0 and box["y"] >= 0 and box["y"] + box["height"] <= height + 1, (part, box)
    size = browser_page.locator("#headline").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 48  # CSS pixels: letters about a centimetre tall, read from 2 m
    browser_page.screenshot(path=SCREENSHOTS / f"passgate-guard-{width}x{height}.png", animations="disabled")


def test_a_slow_status_answer_does_not_draw_over_newer_counts(
    browser_page: Page, make_display: Callable[..., GuardDisplay]
) -> None:
    """/status asked for as the stream opens, answered only after a decision came down the stream:
    the older answer's counts (none yet) must not replace the decision's (a race seen under load)."""
    asked, answer = threading.Event(), threading.Event()

    def slow_status() -> dict:
        asked.set()
        answer.wait(10)
        return {"state": "IDLE", "gate_id": "G-07", "counts_today": {}, "passages_today": {},
                "lists_stale": True}

    display = make_display(status=slow_status)
    browser_page.goto(display.url)
    assert asked.wait(10)
    display.publish(admitted("Day pass", 7))
    today = browser_page.locator("#today")
    expect(today).to_have_text("Today: 7 admitted  1 refused  0 in  0 out")
    answer.set()
    expect(browser_page.locator("#sync")).to_have_attribute("data-stale", "yes")  # the answer is drawn
    expect(today).to_have_text("Today: 7 admitted  1 refused  0 in  0 out")
