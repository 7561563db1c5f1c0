"""The console's passes page against a real hub: issue one pass (its QR code on the page, decoded
back to the pass) or a batch (a ZIP of QR PNGs and passes.csv), look a pass up with its history at
every gate, revoke, block and unblock it with a reason (the gate's bundle carries the change), and
who may: viewers look, operators change; forms need their CSRF token."""

from __future__ import annotations

import base64
import csv
import io
import time
import zipfile

import pytest
import requests
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from PIL import Image
from playwright.sync_api import Page, expect
from sqlalchemy import select

from passgate import TrustStore, verify_pass
from passgate.decode import decode_image
from passgate_hub.models import IssuerKey
from passgate_hub.scope import Role

from .server import HubServer
from .test_api import TIMEOUT, setup_venue
from .test_console import PASSWORD, SIZES, make_operator, sign_in
from .test_ingest_trust import admitted, beat, post


def pdf_page(path: object) -> Image.Image:
    """The page image of a one-page PDF the console made (Pillow writes a page as one JPEG
    stream; Pillow cannot read PDFs back, so the stream is taken out)."""
    with open(str(path), "rb") as f:
        data = f.read()
    assert data.startswith(b"%PDF") and data.count(b"/DCTDecode") == 1
    start = data.index(b"stream", data.index(b"/DCTDecode")) + len(b"stream")
    jpeg = data[start:data.index(b"endstream", start)].strip(b"\r\n")
    return Image.open(io.BytesIO(jpeg))


def test_issue_look_up_revoke_and_unblock(browser_page: Page, hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    totp = make_operator(hub, "olly", Role.OPERATOR, venues=("arena",))
    sign_in(browser_page, hub, "olly", PASSWORD, totp.now())
    browser_page.click("nav >> text=Passes")
    browser_page.fill("#product", "Day ticket")
    browser_page.fill("#zones", "floor")
    browser_page.fill("#entries", "1")
    browser_page.fill("#valid_until", "2099-12-31T23:00")
    browser_page.click("#issue button[type=submit]")
    expect(browser_page.locator("h1")).to_have_text("Pass issued")
    pass_id = browser_page.locator("#issued-pass-id").text_content() or ""
    png = base64.b64decode((browser_page.locator("#qr").get_attribute("src") or "").split(",", 1)[1])
    [code] = decode_image(Image.open(io.BytesIO(png)))  # the QR holds the pass itself
    trust = TrustStore()
    with hub.session() as s:
        for pem in s.scalars(select(IssuerKey.public_pem).where(IssuerKey.purpose == "passes")):
            trust.add(load_pem_public_key(pem.encode()))  # type: ignore[arg-type]
    checked = verify_pass(code.text or "", trust)
    assert checked.pass_id.hex() == pass_id and checked.product == "Day ticket"
    assert checked.zones == ("floor",)
    with browser_page.expect_download() as download:
        browser_page.click("#download-pdf")
    assert download.value.suggested_filename == f"{pass_id}.pdf"
    assert [c.text for c in decode_image(pdf_page(download.value.path()))] == [code.text]  # the same pass
    browser_page.screenshot(path="/tmp/passgate-console-issued-wide.png")

    assert beat(hub, tokens["g1"], "g1", time.time()).status_code == 200
    post(hub, tokens["g1"], "g1", admitted("g1", pass_id))
    browser_page.click("text=Its page")
    expect(browser_page.locator("#record h2")).to_contain_text(pass_id)
    expect(browser_page.locator("#record")).to_contain_text("Day ticket")
    expect(browser_page.locator("#history tbody tr")).to_have_count(2)  # its decision and redemption at g1
    expect(browser_page.locator("#lists")).to_have_text("On no deny list.")
    browser_page.fill("#reason", "reported stolen")
    browser_page.click("#deny button[value=revoke]")
    expect(browser_page.locator("#message")).to_contain_text("Pass revoked")
    expect(browser_page.locator("#lists")).to_contain_text("On the revoked list: reported stolen.")
    for size, viewport in SIZES.items():
        browser_page.set_viewport_size(viewport)
        browser_page.screenshot(path=f"/tmp/passgate-console-pass-{size}.png", full_page=True)
    bundle = requests.get(f"{hub.url}/v1/gates/arena-g1/bundle", timeout=TIMEOUT,
                          headers={"Authorization": f"Bearer {tokens['g1']}",
                                   "Passgate-Protocol": "2"}).json()
    assert bundle["denylists"]["revoked"]["updates"]  # the gates get it at their next sync

    browser_page.click("#deny button[value=block]")
    expect(browser_page.locator("#lists")).to_contain_text("On the blocked list")
    browser_page.click("#deny button[value=unblock]")
    expect(browser_page.locator("#lists")).not_to_contain_text("blocked")
    browser_page.click("#deny button[value=unblock]")
    expect(browser_page.locator("#message")).to_have_text("Nothing changed: the pass was already unblocked.")

    browser_page.fill("#pass_id", "not-a-pass")
    browser_page.click("text=Look up")
    expect(browser_page.locator("#error")).to_contain_text("give 32 hex characters")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_batch_comes_as_a_zip_and_a_viewer_may_only_look(browser_page: Page, hub: HubServer) -> None:
    setup_venue(hub, hub.admin())
    totp = make_operator(hub, "bea", Role.OPERATOR, venues=("arena",))
    sign_in(browser_page, hub, "bea", PASSWORD, totp.now())
    browser_page.goto(f"{hub.url}/console/passes")
    browser_page.fill("#count", "3")
    browser_page.fill("#valid_until", "2099-12-31T23:00")
    with browser_page.expect_download() as download:
        browser_page.click("#issue button[type=submit]")
    with zipfile.ZipFile(download.value.path()) as zipped:
        rows = list(csv.DictReader(io.StringIO(zipped.read("passes.csv").decode())))
        assert len(rows) == 3 and all(zipped.read(r["qr_file"]).startswith(b"\x89PNG") for r in rows)
    browser_page.fill("#count", "13")
    browser_page.fill("#product", "Season 2027")
    browser_page.select_option("#sheet", "pdf")
    with browser_page.expect_download() as download:
        browser_page.click("#issue button[type=submit]")
    sheet = open(download.value.path(), "rb").read()  # noqa: SIM115
    assert sheet.startswith(b"%PDF") and sheet.count(b"/Type /Page") - sheet.count(b"/Type /Pages") == 2
    cookies = {c["name"]: c["value"] for c in browser_page.context.cookies()}
    csrf = browser_page.locator("#issue input[name=csrf]").get_attribute("value")
    r = requests.post(f"{hub.url}/console/passes/issue", cookies=cookies, timeout=TIMEOUT, data={
        "csrf": csrf, "venue": "arena", "valid_from": "now", "valid_until": "31.12.2099"})
    assert r.status_code == 400 and "Not issued: a time is written as 2026-12-24T18:00" in r.text

    browser_page.context.clear_cookies()
    viewer = make_operator(hub, "val", Role.VIEWER, venues=("arena",))
    sign_in(browser_page, hub, "val", PASSWORD, viewer.now())
    browser_page.goto(f"{hub.url}/console/passes?pass_id={rows[0]['pass_id']}")
    expect(browser_page.locator("#record")).to_be_visible()
    expect(browser_page.locator("#deny")).to_have_count(0)  # no buttons for a viewer
    expect(browser_page.locator("#issue")).to_have_count(0)
    cookies = {c["name"]: c["value"] for c in browser_page.context.cookies()}
    page = requests.get(f"{hub.url}/console/passes", cookies=cookies, timeout=TIMEOUT).text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    r = requests.post(f"{hub.url}/console/passes/deny", cookies=cookies, timeout=TIMEOUT, data={
        "csrf": csrf, "venue": "arena", "pass_id": rows[0]["pass_id"], "action": "revoke"})
    assert r.status_code == 403 and "needs the operator role" in r.text  # the form alone is no right
    r = requests.post(f"{hub.url}/console/passes/deny", cookies=cookies, timeout=TIMEOUT, data={
        "venue": "arena", "pass_id": rows[0]["pass_id"], "action": "revoke"})
    assert r.status_code == 403  # and without its token, nobody


def test_a_printable_sheet_holds_each_pass_readable_twelve_a_page() -> None:
    from passgate import generate_private_key, issue_pass
    from passgate_hub.console import sheets

    key = generate_private_key()
    passes = [(f"{n:032x}", issue_pass(key, valid_from=0, valid_until=2**31, product="Season 2027"))
              for n in range(13)]
    pages = sheets.sheet_pages(passes, "Season 2027")
    assert len(pages) == 2 and pages[0].size == sheets.PAGE
    read = [sorted(c.text or "" for c in decode_image(page)) for page in pages]
    assert [len(r) for r in read] == [12, 1]
    assert sorted(read[0] + read[1]) == sorted(text for _, text in passes)  # every pass, readable


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_holder_bound_passes_come_as_claim_links_and_a_new_link_voids_the_old(browser_page: Page,
                                                                             hub: HubServer) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from .test_claims import claim, refused

    setup_venue(hub, hub.admin())
    totp = make_operator(hub, "cleo", Role.OPERATOR, venues=("arena",))
    sign_in(browser_page, hub, "cleo", PASSWORD, totp.now())
    browser_page.goto(f"{hub.url}/console/passes")
    browser_page.fill("#valid_until", "2099-12-31T23:00")
    browser_page.check("#holder_bound")
    browser_page.click("#issue button[type=submit]")
    expect(browser_page.locator("h1")).to_have_text("Claim link issued")
    url = browser_page.locator("#claim-url").text_content() or ""
    pass_id = browser_page.locator("#claimed-pass-id").text_content() or ""
    assert url.startswith(f"{hub.url}/wallet#claim=")
    png = base64.b64decode((browser_page.locator("#qr").get_attribute("src") or "").split(",", 1)[1])
    assert [c.text for c in decode_image(Image.open(io.BytesIO(png)))] == [url]  # the QR opens the wallet
    code = url.split("#claim=", 1)[1]
    browser_page.screenshot(path="/tmp/passgate-console-claim.png", full_page=True)

    phone = ec.generate_private_key(ec.SECP256R1())
    assert claim(hub, code, phone).status_code == 200
    browser_page.click("text=Its page")
    expect(browser_page.locator("#claim")).to_contain_text("claimed 20")
    expect(browser_page.locator("#claim")).to_contain_text("claimed by 1 device in all")
    browser_page.screenshot(path="/tmp/passgate-console-claimed-pass.png", full_page=True)
    browser_page.click("#claim-reset button")
    expect(browser_page.locator("h1")).to_have_text("New claim link")
    expect(browser_page.locator("#note")).to_contain_text("revoke the pass and issue a new one")
    new_code = (browser_page.locator("#claim-url").text_content() or "").split("#claim=", 1)[1]
    assert new_code != code
    refused(claim(hub, code, ec.generate_private_key(ec.SECP256R1())), 404, "claim_unknown")
    assert claim(hub, new_code, ec.generate_private_key(ec.SECP256R1())).status_code == 200
    browser_page.goto(f"{hub.url}/console/passes?pass_id={pass_id}")
    expect(browser_page.locator("#claim")).to_contain_text("claimed by 2 devices in all")

    browser_page.fill("#count", "2")
    browser_page.fill("#valid_until", "2099-12-31T23:00")
    browser_page.check("#holder_bound")
    with browser_page.expect_download() as download:
        browser_page.click("#issue button[type=submit]")
    with zipfile.ZipFile(download.value.path()) as zipped:
        rows = list(csv.DictReader(io.StringIO(zipped.read("claims.csv").decode())))
        assert len(rows) == 2 and all(zipped.read(r["qr_file"]).startswith(b"\x89PNG") for r in rows)
    assert all(r["claim_url"].endswith(f"#claim={r['claim_code']}") for r in rows)
    assert claim(hub, rows[0]["claim_code"], phone).status_code == 200

    other = hub.admin().post(f"{hub.url}/v1/admin/venues/arena/passes", timeout=TIMEOUT, json={
        "count": 1, "valid_from": 0, "valid_until": 4_000_000_000}).json()["passes"][0]["pass_id"]
    browser_page.goto(f"{hub.url}/console/passes?pass_id={other}")
    expect(browser_page.locator("#claim")).to_have_count(0)  # a plain pass has no claim link
    cookies = {c["name"]: c["value"] for c in browser_page.context.cookies()}
    csrf = browser_page.locator("#issue input[name=csrf]").get_attribute("value")
    r = requests.post(f"{hub.url}/console/passes/claim-reset", cookies=cookies, timeout=TIMEOUT,
                      headers={"Origin": hub.url}, data={"csrf": csrf, "venue": "arena", "pass_id": other})
    assert r.status_code == 409 and "is not holder-bound" in r.text
    r = requests.post(f"{hub.url}/console/passes/claim-reset", cookies=cookies, timeout=TIMEOUT,
                      headers={"Origin": hub.url}, data={"venue": "arena", "pass_id": pass_id})
    assert r.status_code == 403  # without the form's token, no new link
