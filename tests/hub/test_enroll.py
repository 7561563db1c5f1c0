"""Gate enrollment against a real hub over loopback HTTP: an operator's one-time code (CLI or
console) exchanged by ``passgated enroll`` for the gate's token, written into its config (mode
0600) and working at once; a code works once and for a day, a wrong one is refused like a used one,
and no token is ever shown in the console."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import text

from passgate import wire
from passgate_hub import ops
from passgate_hub.scope import Role
from passgated.config import load_config

from .server import HubServer
from .test_api import TIMEOUT, setup_venue
from .test_console import PASSWORD, SIZES, make_operator, sign_in
from .test_ingest_trust import run_cli


def enroll_cli(hub: HubServer, code: str, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "passgated.cli", "enroll", code, "--hub", hub.url,
                           "--config", str(config), *extra], capture_output=True, text=True, timeout=60)


def bundle_status(hub: HubServer, gate_id: str, token: str) -> int:
    return requests.get(f"{hub.url}/v1/gates/{gate_id}/bundle", timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {token}",
                                 wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)}).status_code


def test_a_code_from_the_cli_enrolls_a_gate_once(hub: HubServer, db_url: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    old_token = setup_venue(hub, hub.admin())["g1"]
    made = run_cli(db_url, capsys, "gate", "enroll-code", "arena", "arena-g1")
    assert re.fullmatch(r"[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}", made["code"])
    assert bundle_status(hub, "arena-g1", old_token) == 200  # the old token works until the code is used
    config = tmp_path / "etc" / "gate.toml"
    done = enroll_cli(hub, made["code"].lower().replace("-", " "), config)  # as a person types it
    assert done.returncode == 0, done.stderr
    assert "enrolled as gate arena-g1 of venue arena" in done.stdout
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    loaded = load_config(config)
    assert (loaded.gate_id, loaded.venue) == ("arena-g1", "arena")
    assert loaded.hub is not None and loaded.hub.url == hub.url
    assert bundle_status(hub, "arena-g1", loaded.hub.token) == 200
    assert bundle_status(hub, "arena-g1", old_token) == 401  # replaced
    again = enroll_cli(hub, made["code"], tmp_path / "other.toml")
    assert again.returncode == 2 and "wrong, used or expired" in again.stderr
    assert "Traceback" not in again.stderr
    exists = enroll_cli(hub, "ABCDE-FGHJK-MNPQR", config)
    assert exists.returncode == 2 and "--force replaces it" in exists.stderr
    assert load_config(config).hub == loaded.hub  # untouched, and the code was not spent on it
    with hub.session() as s:
        actions = [a for (a,) in s.execute(text("SELECT action FROM audit_log "
                                                "WHERE action LIKE 'gate.enroll%' ORDER BY id"))]
    assert actions == ["gate.enroll_code", "gate.enroll"]


def test_bad_codes_expired_codes_and_disabled_gates_are_refused(hub: HubServer, tmp_path: Path) -> None:
    setup_venue(hub, hub.admin())
    with hub.session() as s:
        venue = ops.get_venue(s, "arena")
        expired, _ = ops.enrollment_code(s, venue, "arena-g1", now=0.0)
        disabled, _ = ops.enrollment_code(s, venue, "arena-g2")
        ops.disable_gate(s, venue, "arena-g2")
        s.commit()
    for code, status in ((expired, 404), ("ZZZZZ-ZZZZZ-ZZZZZ", 404), ("x", 422), ("<script>!", 422),
                         (disabled, 409)):
        r = requests.post(f"{hub.url}/v1/enroll", json={"code": code}, timeout=TIMEOUT)
        assert r.status_code == status, (code, r.text)
    done = enroll_cli(hub, "x", tmp_path / "g.toml")
    assert done.returncode == 2 and "not an enrollment code" in done.stderr
    unreachable = subprocess.run([sys.executable, "-m", "passgated.cli", "enroll", "ABCDE-FGHJK-MNPQR",
                                  "--hub", "http://127.0.0.1:9", "--config", str(tmp_path / "g.toml")],
                                 capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 2 and "cannot reach the hub" in unreachable.stderr
    assert not (tmp_path / "g.toml").exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_console_adds_a_gate_and_shows_its_code_never_a_token(browser_page: Page, hub: HubServer,
                                                                  tmp_path: Path) -> None:
    setup_venue(hub, hub.admin())
    totp = make_operator(hub, "gil", Role.ADMIN, venues=("arena",))
    sign_in(browser_page, hub, "gil", PASSWORD, totp.now())
    browser_page.click("nav >> text=Gates")
    browser_page.fill("#gate_id", "arena-south")
    browser_page.select_option("#zone", "vip")
    browser_page.click("#create button[type=submit]")
    code = browser_page.locator("#enrol-code").text_content() or ""
    expect(browser_page.locator("#enrol-command")).to_have_text(f"passgated enroll {code} --hub {hub.url}")
    assert "pgg_" not in browser_page.content()  # no token, ever
    for size, viewport in SIZES.items():
        browser_page.set_viewport_size(viewport)
        browser_page.screenshot(path=f"/tmp/passgate-console-enroll-{size}.png", full_page=True)
    row = browser_page.locator("tr[data-gate=arena-south]")
    expect(row).to_contain_text("enrollment open until")
    done = enroll_cli(hub, code, tmp_path / "gate.toml")
    assert done.returncode == 0, done.stderr
    browser_page.goto(f"{hub.url}/console/gates")
    expect(row).to_contain_text("since")
    row.locator("button[value=disable]").click()
    expect(browser_page.locator("tr[data-gate=arena-south]")).to_contain_text("disabled")
    browser_page.fill("#gate_id", "arena-south")
    browser_page.click("#create button[type=submit]")
    expect(browser_page.locator("#error")).to_contain_text("exists")

    browser_page.context.clear_cookies()
    viewer = make_operator(hub, "vera", Role.OPERATOR, venues=("arena",))
    sign_in(browser_page, hub, "vera", PASSWORD, viewer.now())
    browser_page.goto(f"{hub.url}/console/gates")
    expect(browser_page.locator("#create")).to_have_count(0)  # gates are for admins
