"""The console's keys page against a real hub: generate a hub-held issuing key, trust a public key
signed elsewhere, retire and revoke (the gates' bundle follows), refuse what is not a key; admins
only change, others look."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import Page, expect

from passgate import generate_private_key, wire
from passgate.keys import public_pem
from passgate_hub.scope import Role

from .server import HubServer
from .test_api import TIMEOUT, setup_venue
from .test_console import PASSWORD, SIZES, make_operator, sign_in


def bundle_keys(hub: HubServer, token: str) -> dict[str, dict]:
    bundle = requests.get(f"{hub.url}/v1/gates/arena-g1/bundle", timeout=TIMEOUT, headers={
        "Authorization": f"Bearer {token}", wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)}).json()
    return {k["kid"]: k for k in bundle["keys"]}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_keys_are_added_retired_and_revoked_from_the_console(browser_page: Page, hub: HubServer) -> None:
    tokens = setup_venue(hub, hub.admin())
    totp = make_operator(hub, "kim", Role.ADMIN, venues=("arena",))
    sign_in(browser_page, hub, "kim", PASSWORD, totp.now())
    browser_page.click("nav >> text=Keys")
    rows = browser_page.locator("#keys tbody tr")
    expect(rows).to_have_count(2)  # the venue's deny-list key and the issuer key setup_venue made
    partner = public_pem(generate_private_key().public_key()).decode()
    browser_page.fill("#issuer", "Partner box office")
    browser_page.fill("#public_pem", partner)
    browser_page.click("#add button[value=upload]")
    expect(browser_page.locator("#message")).to_contain_text("the gates trust it from their next sync")
    expect(rows).to_have_count(3)
    added = rows.nth(2)
    expect(added).to_contain_text("Partner box office")
    expect(added).to_contain_text("elsewhere")
    kid = added.get_attribute("data-kid") or ""
    assert kid in bundle_keys(hub, tokens["g1"])

    added.locator("button[value=retire]").click()
    expect(browser_page.locator(f"tr[data-kid='{kid}']")).to_contain_text("retired")
    assert bundle_keys(hub, tokens["g1"])[kid]["retired_at"] is not None
    browser_page.locator(f"tr[data-kid='{kid}'] button[value=revoke]").click()
    expect(browser_page.locator(f"tr[data-kid='{kid}']")).to_contain_text("revoked")
    assert bundle_keys(hub, tokens["g1"])[kid]["revoked_at"] is not None
    browser_page.click("#add button[value=generate]")
    expect(rows).to_have_count(4)
    expect(rows.nth(3)).to_contain_text("held by the hub (sealed)")
    for size, viewport in SIZES.items():
        browser_page.set_viewport_size(viewport)
        browser_page.screenshot(path=f"/tmp/passgate-console-keys-{size}.png", full_page=True)

    browser_page.fill("#public_pem", "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----")
    browser_page.click("#add button[value=upload]")
    expect(browser_page.locator("#error")).to_be_visible()
    expect(rows).to_have_count(4)

    browser_page.context.clear_cookies()
    viewer = make_operator(hub, "vik", Role.OPERATOR, venues=("arena",))
    sign_in(browser_page, hub, "vik", PASSWORD, viewer.now())
    browser_page.goto(f"{hub.url}/console/keys")
    expect(rows).to_have_count(4)
    expect(browser_page.locator("#add")).to_have_count(0)
    expect(browser_page.locator("#keys button")).to_have_count(0)
