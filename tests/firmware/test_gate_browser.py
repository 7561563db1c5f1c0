"""The guard page of a simulated gate in a real browser (Debian's chromium via Playwright): two
scans, and the page turns from ADMIT to REFUSED with the reason."""

import sqlite3
import threading
import time
from pathlib import Path

import requests
from playwright.sync_api import Page, expect

from passgate import TrustStore, generate_private_key, issue_pass
from passgated.config import load_config
from passgated.simulate import SimulatedGate, feed


def test_simulated_gate_page_turns_from_admit_to_refused(browser_page: Page, tmp_path: Path) -> None:
    key = generate_private_key()
    trust = TrustStore()
    trust.add(key.public_key())
    # A bound longer than the product's 300 ms (the suite runs on loaded machines), still short enough
    # for the locked journal below to refuse within the page's wait.
    config = load_config(None, zones=["A"], journal_path=tmp_path / "j.db", display_listen="127.0.0.1:0",
                         journal_write_timeout_s=2.0)
    gate = SimulatedGate(config, walk_s=1.0, trust=trust, sources=[])
    gate.start()
    try:
        browser_page.goto(gate.display.url)
        expect(browser_page.locator("#connection")).to_have_text("live")
        expect(browser_page.locator("#headline")).to_have_text("READY")
        assert f'<b id="gate">{config.gate_id}</b>' in requests.get(gate.display.url, timeout=10).text
        valid = issue_pass(key, valid_from=time.time() - 60, valid_until=time.time() + 3600, zones=["A"],
                           product="Day pass")
        scanner = threading.Thread(target=feed, args=(gate, [valid]))
        scanner.start()
        expect(browser_page.locator("#headline")).to_have_text("ADMIT")
        expect(browser_page.locator("#product")).to_have_text("Day pass")  # the guard checks it fits
        expect(browser_page.locator("#today")).to_contain_text("1 admitted")
        expect(browser_page.locator("#today")).to_contain_text("1 in")  # once the holder walked through
        scanner.join(timeout=10)
        zone_b = issue_pass(key, valid_from=time.time() - 60, valid_until=time.time() + 3600, zones=["B"])
        feed(gate, [zone_b])
        expect(browser_page.locator("#headline")).to_have_text("REFUSED")
        expect(browser_page.locator("#reason")).to_have_text("Pass for zone B")
        expect(browser_page.locator("#recent li")).to_have_count(2)
        expect(browser_page.locator("#recent li").nth(1)).to_contain_text("ENTRY · Day pass")
        browser_page.screenshot(path="/tmp/passgate-gate-refused.png", animations="disabled")

        feed(gate, [valid[:20] + "::" + valid[22:]])  # a damaged code: the guard reads plain words
        expect(browser_page.locator("#reason")).to_have_text("Not a valid pass: ask for another copy")
        expect(browser_page.locator("#why")).to_contain_text("Base45")  # the detail in small print

        other = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the journal cannot record: the gate refuses and says why
        try:
            again = issue_pass(key, valid_from=time.time() - 60, valid_until=time.time() + 3600, zones=["A"])
            feed(gate, [again])
            expect(browser_page.locator("#headline")).to_have_text("FAULT")
            expect(browser_page.locator("#reason")).to_have_text("Out of order: please use another gate")
            expect(browser_page.locator("#why")).to_contain_text("Journal cannot record")
            browser_page.screenshot(path="/tmp/passgate-gate-fault.png", animations="disabled")
        finally:
            other.execute("ROLLBACK")
            other.close()
        expect(browser_page.locator("#headline")).to_have_text("READY", timeout=10_000)
    finally:
        gate.stop()
