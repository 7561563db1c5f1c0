"""The console in a real browser against a real hub over loopback HTTP (SQLite and PostgreSQL):
signing in with a password and a TOTP code, what a wrong one, a lock-out, a replayed code and a
form without its CSRF token get, and what each operator sees. Screenshots at 1280×800 and 390×844
go to /tmp/passgate-console-*.png."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import text

from passgate_hub import console, operators
from passgate_hub.scope import Role

from .server import HubServer

SHOTS = Path("/tmp")
PASSWORD = "correct horse battery staple"
SIZES = {"wide": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def make_operator(hub: HubServer, name: str, role: Role = Role.ADMIN, venues: tuple[str, ...] = ("arena",),
                  all_venues: bool = False) -> pyotp.TOTP:
    with hub.session() as s:
        for venue in venues:
            if s.execute(text("SELECT count(*) FROM venues WHERE name = :v"), {"v": venue}).scalar() == 0:
                from passgate_hub import ops
                ops.create_venue(s, venue)
        made = operators.create(s, name, role=role, venues=venues if not all_venues else (),
                                all_venues=all_venues, password=PASSWORD, by=_everything())
        s.commit()
    secret = parse_qs(urlsplit(made.totp_uri).query)["secret"][0]
    return pyotp.TOTP(secret)


def _everything():  # type: ignore[no-untyped-def]
    from passgate_hub.scope import EVERYTHING
    return EVERYTHING


def sign_in(page: Page, hub: HubServer, name: str, password: str, code: str) -> None:
    page.goto(f"{hub.url}/console")
    expect(page).to_have_url(re.compile(r"/console/login$"))  # signed out: to the form
    page.fill("#name", name)
    page.fill("#password", password)
    page.fill("#code", code)
    page.click("button[type=submit]")


def fresh_code(totp: pyotp.TOTP, after: int | None = None) -> str:
    """A code of a time step later than ``after`` (a code works once)."""
    step = int(time.time() // totp.interval)
    if after is not None and step <= after:
        step = after + 1
    return str(totp.at(step * totp.interval))


def test_sign_in_with_password_and_code_then_sign_out(browser_page: Page, hub: HubServer) -> None:
    totp = make_operator(hub, "alice")
    for size, viewport in SIZES.items():
        browser_page.set_viewport_size(viewport)
        browser_page.goto(f"{hub.url}/console/login")
        browser_page.screenshot(path=SHOTS / f"passgate-console-login-{size}.png")
    sign_in(browser_page, hub, "alice", PASSWORD, totp.now())
    expect(browser_page.locator("h1")).to_have_text("Signed in as alice")
    expect(browser_page.locator("#grants")).to_contain_text("arena")
    expect(browser_page.locator("#grants")).to_contain_text("admin")
    browser_page.screenshot(path=SHOTS / "passgate-console-home-phone.png")
    cookie = next(c for c in browser_page.context.cookies() if c["name"] == console.SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    with hub.session() as s:  # the token is held only as its hash
        held = s.execute(text("SELECT token_hash FROM console_sessions")).scalars().all()
        actions = s.execute(text("SELECT action, actor, target FROM audit_log "
                                 "WHERE action LIKE 'console.%'")).all()
    assert len(held) == 1 and cookie["value"] not in held[0]
    assert [tuple(a) for a in actions] == [("console.sign_in", "console", "alice")]

    browser_page.click("text=Sign out")
    expect(browser_page).to_have_url(re.compile(r"/console/login$"))
    browser_page.goto(f"{hub.url}/console")  # the session is gone: back to the form
    expect(browser_page).to_have_url(re.compile(r"/console/login$"))
    with hub.session() as s:
        assert s.execute(text("SELECT count(*) FROM console_sessions")).scalar() == 0


def test_wrong_password_and_code_and_a_replayed_code_are_refused_then_the_account_locks(
    browser_page: Page, hub: HubServer
) -> None:
    totp = make_operator(hub, "bob", Role.VIEWER)
    sign_in(browser_page, hub, "bob", "not the password", totp.now())
    expect(browser_page.locator("#error")).to_have_text("wrong name, password or code")
    sign_in(browser_page, hub, "bob", PASSWORD, "000000" if totp.now() != "000000" else "111111")
    expect(browser_page.locator("#error")).to_have_text("wrong name, password or code")
    sign_in(browser_page, hub, "nobody", PASSWORD, totp.now())  # an unknown name says the same
    expect(browser_page.locator("#error")).to_have_text("wrong name, password or code")

    code = totp.now()
    sign_in(browser_page, hub, "bob", PASSWORD, code)
    expect(browser_page.locator("h1")).to_have_text("Signed in as bob")
    browser_page.context.clear_cookies()
    sign_in(browser_page, hub, "bob", PASSWORD, code)  # the same code again: used up
    expect(browser_page.locator("#error")).to_have_text("wrong name, password or code")

    for _ in range(operators.MAX_FAILURES - 1):  # the replay was the first failure of this run
        sign_in(browser_page, hub, "bob", "not the password", totp.now())
    expect(browser_page.locator("#error")).to_contain_text("locked for 15 minutes")
    browser_page.screenshot(path=SHOTS / "passgate-console-locked-wide.png")
    sign_in(browser_page, hub, "bob", PASSWORD, fresh_code(totp, after=int(time.time() // 30) + 1))
    expect(browser_page.locator("#error")).to_contain_text("locked until")  # even the right password
    with hub.session() as s:
        actions = [a for (a,) in s.execute(text("SELECT action FROM audit_log WHERE action LIKE 'console.%' "
                                                "ORDER BY id"))]
    assert actions.count("console.sign_in_failed") == 3 + 1 + operators.MAX_FAILURES - 2 + 1
    assert actions.count("console.locked") == 1 and actions.count("console.sign_in") == 1


def test_a_form_without_its_csrf_token_or_from_another_site_is_refused(hub: HubServer) -> None:
    totp = make_operator(hub, "carol")
    client = requests.Session()
    form = client.get(f"{hub.url}/console/login", timeout=10)
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    fields = {"name": "carol", "password": PASSWORD, "code": totp.now()}
    assert client.post(f"{hub.url}/console/login", data=fields, timeout=10,
                       allow_redirects=False).status_code == 403  # no token
    assert client.post(f"{hub.url}/console/login", data={**fields, "csrf": "x" * 32}, timeout=10,
                       allow_redirects=False).status_code == 403  # not the cookie's
    other = requests.post(f"{hub.url}/console/login", data={**fields, "csrf": token}, timeout=10,
                          allow_redirects=False)
    assert other.status_code == 403  # the token without its cookie (another browser)
    assert client.post(f"{hub.url}/console/login", data={**fields, "csrf": token}, timeout=10,
                       headers={"Origin": "http://evil.example"}, allow_redirects=False).status_code == 403
    with hub.session() as s:  # none of those counted as a try, nor signed in
        assert s.execute(text("SELECT failures FROM operators")).scalar() == 0
    form = client.get(f"{hub.url}/console/login", timeout=10)  # a refused form came back with a new token
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    signed = client.post(f"{hub.url}/console/login", data={**fields, "csrf": token}, timeout=10,
                         allow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/console"

    out = client.post(f"{hub.url}/console/logout", data={"csrf": "forged"}, timeout=10, allow_redirects=False)
    assert out.status_code == 403 and "nothing was done" in out.text
    assert client.get(f"{hub.url}/console", timeout=10, allow_redirects=False).status_code == 200  # still in
    page = client.get(f"{hub.url}/console", timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert client.post(f"{hub.url}/console/logout", data={"csrf": csrf}, timeout=10,
                       allow_redirects=False).status_code == 303


def test_an_operator_sees_only_its_venues(browser_page: Page, hub: HubServer) -> None:
    make_operator(hub, "root", all_venues=True)
    totp = make_operator(hub, "dana", Role.OPERATOR, venues=("arena",))
    make_operator(hub, "erin", Role.ADMIN, venues=("stadium",))
    sign_in(browser_page, hub, "dana", PASSWORD, totp.now())
    expect(browser_page.locator("#grants")).to_contain_text("arena")
    expect(browser_page.locator("#grants")).not_to_contain_text("stadium")
    expect(browser_page.locator("#hub-wide")).to_have_count(0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_disabled_operator_is_signed_out_at_once_and_cannot_sign_in(
    browser_page: Page, hub: HubServer
) -> None:
    totp = make_operator(hub, "fay")
    sign_in(browser_page, hub, "fay", PASSWORD, totp.now())
    expect(browser_page.locator("h1")).to_have_text("Signed in as fay")
    with hub.session() as s:
        operators.set_disabled(s, "fay", True, by=_everything())
        s.commit()
    browser_page.reload()
    expect(browser_page).to_have_url(re.compile(r"/console/login$"))
    browser_page.fill("#name", "fay")
    browser_page.fill("#password", PASSWORD)
    browser_page.fill("#code", fresh_code(totp, after=int(time.time() // 30)))
    browser_page.click("button[type=submit]")
    expect(browser_page.locator("#error")).to_contain_text("disabled")
