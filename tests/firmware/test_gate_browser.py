"""The guard page of a simulated gate in a real browser (Debian's chromium via Playwright): two
scans, and the page turns from ADMIT to REFUSED with the reason."""

import threading
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from passgate import TrustStore, generate_private_key, issue_pass
from passgated.config import load_config
from passgated.simulate import SimulatedGate, feed


def test_simulated_gate_page_turns_from_admit_to_refused(browser_page: Page, tmp_path: Path) -> None:
    key = generate_private_key()
    trust = TrustStore()
    trust.add(key.public_key())
    config = load_config(None, zones=["A"], journal_path=tmp_path / "j.db", display_listen="127.0.0.1:0")
    gate = SimulatedGate(config, walk_s=1.0, trust=trust, sources=[])
    gate.start()
    try:
        browser_page.goto(gate.display.url)
        expect(browser_page.locator("#connection")).to_have_text("live")
        expect(browser_page.locator("#headline")).to_have_text("READY")
        valid = issue_pass(key, valid_from=time.time() - 60, valid_until=time.time() + 3600, zones=["A"])
        scanner = threading.Thread(target=feed, args=(gate, [valid]))
        scanner.start()
        expect(browser_page.locator("#headline")).to_have_text("ADMIT")
        scanner.join(timeout=10)
        zone_b = issue_pass(key, valid_from=time.time() - 60, valid_until=time.time() + 3600, zones=["B"])
        feed(gate, [zone_b])
        expect(browser_page.locator("#headline")).to_have_text("REFUSED")
        expect(browser_page.locator("#reason")).to_have_text("Pass for zone B")
        browser_page.screenshot(path="/tmp/passgate-gate-refused.png", animations="disabled")
    finally:
        gate.stop()
