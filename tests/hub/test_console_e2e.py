"""The console end to end, in Debian's chromium, over real processes: ``passgate-hub serve`` (SQLite)
set up with the hub's CLI as an operator would (a venue, a zone, an admin with password and TOTP),
and a ``passgated simulate`` gate that joined by the code the console's Gates page showed and syncs
with the same hub every second, its scanner a pty.

Signed in with password and code, the admin generates a pass key (Keys), adds the gate and runs the
command the page shows on it (Gates), issues a single pass (its QR code downloaded and read back)
and a batch (a ZIP with passes.csv) (Passes), shows them to the gate's reader, watches the Live
page's counts and chart follow over server-sent events, revokes an unused pass with a reason and
sees the gate refuse it once it synced, finds the refusal in the pass's history, exports the
events as CSV (Events), and looks at the Fleet and the Audit log. Every page visited is saved at
1280×800 and 390×844 to /tmp/passgate-console-e2e-*.png (where the console's other tests put
theirs); what must be on each page is asserted as text, at both sizes.

Every wait is bounded (Playwright's expectations with a timeout, or the gate's bounded polls); the
processes and the live page's event stream end in ``finally`` even when a step fails.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pyotp
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, ViewportSize, expect

from passgate.decode import decode_image
from passgated.config import load_config
from tests.system.procs import BIN, WAIT_S, GateProcess, HubProcess, hub_json

from .test_console import PASSWORD, SIZES

SHOTS = Path("/tmp")
VIEWPORTS = {size: ViewportSize(width=v["width"], height=v["height"]) for size, v in SIZES.items()}
WIDE = VIEWPORTS["wide"]
WAIT_MS = WAIT_S * 1000  # for Playwright's expectations: the gate uploads every second, the stream polls
VENUE, ZONE, GATE = "arena", "floor", "north-1"
# What stays local to a gate enrolled on a hub: its journal, guard page, timing and scanner (a pty).
LOCAL_CONFIG = ('[journal]\npath = "journal.db"\nwrite_timeout_ms = 5000\n'
                '[display]\nlisten = "127.0.0.1:0"\n'
                '[timing]\nrelay_pulse_ms = 30\nrefusal_display_ms = 30\n'
                '[[scanner]]\nsource = "serial:{reader}"\ndirection = "entry"\ndedupe = 0\n')


class Site:
    """A hub process with the arena, its floor and an admin made with the CLI; the gate comes later
    (``enroll``), from the code the console shows."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.database = f"sqlite:///{tmp_path / 'hub.db'}"
        hub_json(self.database, "venue", "create", VENUE)
        hub_json(self.database, "venue", "set", VENUE, "--timezone", NOON)
        hub_json(self.database, "zone", "create", VENUE, ZONE)
        made = subprocess.run([str(BIN / "passgate-hub"), "--database", self.database, "operator", "create",
                               "ada", "--role", "admin", "--venue", VENUE, "--password-stdin"],
                              input=PASSWORD + "\n", capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        secret = parse_qs(urlsplit(json.loads(made.stdout)["totp_uri"]).query)["secret"][0]
        self.totp = pyotp.TOTP(secret)
        self.hub = HubProcess(self.database)
        self.gate: GateProcess | None = None
        try:
            self.hub.start()
        except BaseException:
            self.hub.stop()  # one that started but never answered
            raise

    def enroll(self, command: str) -> GateProcess:
        """Run the enrollment command the console showed, as written there, then give the config it
        wrote what stays local to a gate (and a one-second sync) and start the gate on it."""
        words = command.split()
        assert words[:2] == ["passgated", "enroll"], command
        root = self.tmp / GATE
        self.gate = gate = GateProcess(root, GATE, self.hub.url, "unused")  # its readers (ptys)
        config = root / "gate.toml"
        config.unlink()  # GateProcess's own: the enrolled one replaces it
        done = subprocess.run([str(BIN / "passgated"), *words[1:], "--config", str(config)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"enrolled as gate {GATE} of venue {VENUE}" in done.stdout
        enrolled = config.read_text()
        assert "[hub]" in enrolled and enrolled.rstrip().splitlines()[-1].startswith("token = ")
        config.write_text(enrolled + "interval_seconds = 1\n"  # the [hub] table is the file's last
                          + LOCAL_CONFIG.format(reader=gate.readers["entry"].link))
        loaded = load_config(config)
        assert (loaded.gate_id, loaded.venue) == (GATE, VENUE)
        assert loaded.hub is not None and loaded.hub.url == self.hub.url and loaded.hub.interval_s == 1
        return gate.start()

    def close(self) -> None:
        try:
            if self.gate is not None:
                self.gate.close()
        finally:
            self.hub.stop()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    arena = Site(tmp_path)
    try:
        yield arena
    finally:
        arena.close()


def shoot(page: Page, name: str, *showing: Locator) -> None:
    """The page at 1280×800 and 390×844 (full length), each size asserted to show ``showing``;
    back at the wide size after."""
    for size, viewport in VIEWPORTS.items():
        page.set_viewport_size(viewport)
        for locator in showing:
            expect(locator).to_be_visible()
        page.screenshot(path=SHOTS / f"passgate-console-e2e-{name}-{size}.png", full_page=True)
    page.set_viewport_size(WIDE)


def noon_zone() -> str:
    """A zone where it is about noon now: the venue's day (its live chart) holds the whole test,
    whenever it runs (in UTC, a run across midnight would start a new chart halfway)."""
    ahead = 12 - datetime.now(UTC).hour  # -11..12 hours; Etc/GMT's sign is the other way round
    return "Etc/GMT" if ahead == 0 else f"Etc/GMT{-ahead:+d}"


NOON = noon_zone()


def hours_from_now() -> str:
    """A form's datetime-local value four hours from now in the arena's time zone."""
    return (datetime.now(ZoneInfo(NOON)) + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")


def test_the_console_drives_a_real_gate_from_enrollment_to_a_refused_revoked_pass(
    browser_page: Page, site: Site
) -> None:
    page, hub = browser_page, site.hub
    page.set_viewport_size(WIDE)
    live: Page | None = None
    try:
        # Sign in: password and the authenticator's code
        page.goto(f"{hub.url}/console")
        expect(page).to_have_url(re.compile(r"/console/login$"))
        shoot(page, "login", page.locator("#name"), page.locator("#code"))
        page.fill("#name", "ada")
        page.fill("#password", PASSWORD)
        page.fill("#code", site.totp.now())
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Signed in as ada")
        expect(page.locator("#grants")).to_contain_text(VENUE)
        expect(page.locator("#grants")).to_contain_text("admin")
        shoot(page, "home", page.locator("h1"), page.locator("#grants"))

        # Keys: a hub-held pass key to issue with (the venue has only its deny-list key yet)
        page.click("nav >> text=Keys")
        page.fill("#issuer", "Arena")
        page.click("#add button[value=generate]")
        expect(page.locator("#message")).to_contain_text("the gates trust it from their next sync")
        expect(page.locator("#keys tbody tr")).to_have_count(2)
        expect(page.locator("#keys")).to_contain_text("held by the hub (sealed)")
        shoot(page, "keys", page.locator("#message"), page.locator("#keys"))

        # Gates: add the gate, run the command the page shows on it
        page.click("nav >> text=Gates")
        page.fill("#gate_id", GATE)
        page.select_option("#zone", ZONE)
        page.click("#create button[type=submit]")
        code = page.locator("#enrol-code").text_content() or ""
        assert re.fullmatch(r"[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}", code), code
        command = page.locator("#enrol-command")
        expect(command).to_have_text(f"passgated enroll {code} --hub {hub.url}")
        expect(page.locator(f"tr[data-gate={GATE}]")).to_contain_text("enrollment open until")
        assert "pgg_" not in page.content()  # never a token
        shoot(page, "gates-enroll", page.locator("#enrol-code"), command)
        gate = site.enroll(command.text_content() or "")
        # keys, zone and both lists from the hub (so admits need no check by eye)
        gate.wait_status(lambda s: s["state"] == "IDLE" and s["zones"] == [ZONE]
                         and sorted(k for k, held in s["lists"].items() if held["version"] > 0)
                         == ["blocked", "revoked"])
        gate.synced()  # a heartbeat after READY: the fleet sees it
        page.goto(f"{hub.url}/console/gates")
        expect(page.locator(f"tr[data-gate={GATE}]")).to_contain_text("since")  # its token, from the code

        # Fleet: the gate beats
        page.click("nav >> text=Fleet")
        row = page.locator(f"#gates tr[data-gate={GATE}]")
        expect(row).to_contain_text("online")
        expect(row).to_contain_text("Ready")
        expect(row).to_contain_text("✓ serial:")
        expect(page.locator("#summary")).to_have_text(
            "1 gate: 1 online, 0 offline, 0 never seen, 0 disabled.")
        shoot(page, "fleet", row, page.locator("#summary"))

        # Live, in a second tab kept open: nothing yet; it follows the stream from here on
        live = page.context.new_page()
        live.set_viewport_size(WIDE)
        live.goto(f"{hub.url}/console/live")
        expect(live.locator("h1")).to_have_text(f"Live: {VENUE}")
        expect(live.locator("#stream")).to_have_text("live")
        expect(live.locator("#entries")).to_have_text("0")
        chart = live.locator("#chart svg")
        expect(chart).to_have_attribute("data-total", "0")
        expect(live.locator("#chart svg title")).to_have_text("Entries per minute today: 0 in all")
        expect(live.locator("#chart svg path")).to_have_count(0)  # no bars
        shoot(live, "live-before", live.locator("#entries"), live.locator("#chart svg"))

        # Passes: one pass (its QR code downloaded and read back), then a batch as a ZIP
        page.click("nav >> text=Passes")
        page.fill("#product", "Day ticket")
        page.fill("#zones", ZONE)
        page.fill("#entries", "1")
        page.fill("#valid_until", hours_from_now())
        page.click("#issue button[type=submit]")
        expect(page.locator("h1")).to_have_text("Pass issued")
        single_id = page.locator("#issued-pass-id").text_content() or ""
        shoot(page, "issued", page.locator("#qr"), page.locator("#issued-pass-id"))
        with page.expect_download() as png:
            page.click("#download")
        assert png.value.suggested_filename == f"{single_id}.png"
        [read] = decode_image(Image.open(png.value.path()))
        single = read.text or ""
        assert single.startswith("PG1:")

        page.click("nav >> text=Passes")
        page.fill("#count", "3")
        page.fill("#product", "Day ticket")
        page.fill("#zones", ZONE)
        page.fill("#entries", "1")
        page.fill("#valid_until", hours_from_now())
        with page.expect_download() as download:
            page.click("#issue button[type=submit]")
        assert re.fullmatch(rf"passes-{VENUE}-\d{{8}}-\d{{6}}\.zip", download.value.suggested_filename)
        with zipfile.ZipFile(download.value.path()) as zipped:
            batch = list(csv.DictReader(io.StringIO(zipped.read("passes.csv").decode())))
            assert all(zipped.read(p["qr_file"]).startswith(b"\x89PNG") for p in batch)
        assert len(batch) == 3
        first, second, kept = batch

        # The gate's reader: three passes in; the live tab's counts and chart follow, no reload
        admitted = {single_id: single, first["pass_id"]: first["text"], second["pass_id"]: second["text"]}
        for pass_id, text in admitted.items():
            answer = gate.scan(text)
            assert (answer["decision"], answer["pass_id"]) == ("admit", pass_id), answer
            assert answer["guard_check"] is False, answer
        expect(live.locator("#entries")).to_have_text("3", timeout=WAIT_MS)
        expect(live.locator("#inside")).to_have_text("3")
        expect(live.locator(f"#zones tr[data-zone={ZONE}] .entries")).to_have_text("3")
        expect(chart).to_have_attribute("data-total", "3", timeout=WAIT_MS)  # fetched again after a change
        expect(live.locator("#chart svg title")).to_have_text(
            re.compile(r"^Entries per minute today: 3 in all; busiest \d\d:\d\d with [1-3]$"))
        expect(live.locator("#chart svg path")).to_have_count(1)  # the bars
        expect(live.locator("#stream")).to_have_text("live")
        shoot(live, "live-after", live.locator("#entries"), live.locator("#chart svg"))
        live.goto("about:blank")  # its event stream ends here, not when the hub stops
        live.close()
        live = None

        # Revoke the pass not used yet, with a reason; the gate refuses it once it has the new list
        listed = gate.status()["lists"]["revoked"]["version"]
        page.click("nav >> text=Passes")
        page.fill("#pass_id", kept["pass_id"])
        page.click("text=Look up")
        expect(page.locator("#record h2")).to_contain_text(kept["pass_id"])
        expect(page.locator("#lists")).to_have_text("On no deny list.")
        expect(page.locator("#history")).to_contain_text("Not seen at any gate yet.")
        page.fill("#reason", "reported lost")
        page.click("#deny button[value=revoke]")
        expect(page.locator("#message")).to_contain_text("Pass revoked")
        expect(page.locator("#lists")).to_contain_text("On the revoked list: reported lost.")
        gate.wait_status(lambda s: s["lists"]["revoked"]["version"] > listed)
        answer = gate.scan(kept["text"])
        assert (answer["decision"], answer["reason"], answer["pass_id"]) == (
            "refuse", "revoked", kept["pass_id"]), answer
        assert answer["text"] == "Pass cancelled: send to the box office"
        last = gate.status()["last_decision"]
        assert (last["decision"], last["reason"]) == ("refuse", "revoked"), last
        assert gate.status()["passages_today"] == {"entry": 3, "exit": 0}  # the relay stayed shut
        gate.synced()  # the refusal is on the hub

        # The pass's page: the revocation and the refusal at the gate
        page.goto(f"{hub.url}/console/passes?pass_id={kept['pass_id']}")
        expect(page.locator("#lists")).to_have_text("On the revoked list: reported lost.")
        refusal = page.locator("#history tbody tr")
        expect(refusal).to_have_count(1)
        for cell in (GATE, "decision", "entry", "refuse", "revoked"):
            expect(refusal).to_contain_text(cell)
        expect(page.locator("#record")).to_contain_text("Day ticket")
        shoot(page, "pass-revoked", page.locator("#lists"), refusal)

        # Events: every decision and passage at the gate; the CSV export holds them
        page.click("nav >> text=Events")
        rows = page.locator("#events tbody tr")
        refused = rows.filter(has=page.locator("td.refuse"))
        expect(refused).to_have_count(1)
        expect(refused).to_contain_text(kept["pass_id"])
        expect(refused).to_contain_text("Pass cancelled: send to the box office")
        for pass_id in admitted:
            expect(rows.filter(has_text=pass_id).filter(has=page.locator("td.admit"))).to_have_count(1)
        shoot(page, "events", page.locator("#events"), page.locator("#export"))
        with page.expect_download() as download:
            page.click("#export")
        exported = list(csv.DictReader(open(download.value.path(), encoding="utf-8")))  # noqa: SIM115
        decisions = {(r["pass_id"], r["decision"], r["reason"]) for r in exported
                     if r["kind"] == "decision" and r["gate_id"] == GATE}
        assert decisions == {*((p, "admit", "admit") for p in admitted),
                             (kept["pass_id"], "refuse", "revoked")}
        redeemed = sorted(r["pass_id"] for r in exported if r["kind"] == "redeemed")
        assert redeemed == sorted(admitted)  # one passage each; none for the refused pass

        # Audit log: what was done in the console, by whom
        page.click("nav >> text=Audit log")
        audit = page.locator("#audit")
        for action in ("key.add", "gate.create", "gate.enroll_code", "gate.enroll", "passes.issue",
                       "revoked.add", "events.export", "console.sign_in"):
            expect(audit).to_contain_text(action)
        expect(audit).to_contain_text("operator:ada")
        assert kept["pass_id"] not in page.content()  # the audit log names no pass
        shoot(page, "audit", audit)
    finally:
        if live is not None:
            live.goto("about:blank")
            live.close()
