"""Holder-bound passes on the real hub over loopback HTTP, on SQLite and PostgreSQL: issued with a
one-time claim code (only its hash kept), claimed once with a wallet's key (two devices racing:
one pass, one ``claim_taken``), signed then so that it verifies with the venue's keys and carries
the holder's key, refused when revoked or expired, limited per address for wrong codes, reset by
an operator, audited without codes or pass ids; the CLI's claim links; the wallet's static files."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import select, text

from passgate import TrustStore, verify_pass
from passgate.holder import present
from passgate.passes import verify_signature
from passgate_hub import audit, claims, cli, db
from passgate_hub.api import wallet
from passgate_hub.models import AuditEntry, IssuedPass, PassClaim
from passgate_hub.scope import Role

from .server import HubServer
from .test_api import setup_venue

TIMEOUT = 10
CODE = re.compile(r"[a-z2-7]{26}")
WALLET = audit.Actor("wallet", None)
WAITING = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND wait_event_type = 'Lock'")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwk_of(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK as WebCrypto's ``exportKey("jwk", publicKey)`` gives it."""
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")), "ext": True, "key_ops": ["verify"]}  # type: ignore[dict-item]


def point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


def issue_bound(hub: HubServer, admin: requests.Session, count: int = 1, **body: Any) -> list[dict[str, Any]]:
    now = time.time()
    given = {"count": count, "valid_from": now - 60, "valid_until": now + 3600, "zones": ["floor"],
             "entries": 2, "holder_bound": True, **body}
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/passes", json=given, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return r.json()["passes"]  # type: ignore[no-any-return]


def claim(hub: HubServer, code: str, key: ec.EllipticCurvePrivateKey | dict[str, Any]) -> requests.Response:
    jwk = jwk_of(key) if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return requests.post(f"{hub.url}/v1/wallet/claim", json={"code": code, "public_key": jwk},
                         timeout=TIMEOUT)


def trust_of(hub: HubServer, admin: requests.Session) -> TrustStore:
    keys = admin.get(f"{hub.url}/v1/admin/venues/arena/keys", timeout=TIMEOUT).json()
    pems = [admin.get(f"{hub.url}/v1/admin/venues/arena/keys/{k['kid']}.pem", timeout=TIMEOUT).text
            for k in keys if k["purpose"] == "passes"]
    return TrustStore(load_pem_public_key(pem.encode()) for pem in pems)  # type: ignore[misc]


def refused(r: requests.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == code and isinstance(body["detail"], str) and body["detail"], body


@pytest.fixture
def arena(hub: HubServer) -> Iterator[requests.Session]:
    admin = hub.admin()
    setup_venue(hub, admin)
    yield admin


# -- issuing ------------------------------------------------------------------------------------------


def test_bound_passes_come_with_claim_codes_and_links_and_the_hub_keeps_only_hashes(
        hub: HubServer, arena: requests.Session) -> None:
    passes = issue_bound(hub, arena, count=3)
    assert len({p["claim_code"] for p in passes}) == 3
    for p in passes:
        assert set(p) == {"pass_id", "claim_code", "claim_url"}  # no text: nothing is signed yet
        assert CODE.fullmatch(p["claim_code"])
        assert p["claim_url"] == f"{hub.url}/wallet#claim={p['claim_code']}"  # the request's base URL
    with hub.session() as s:
        rows = {c.pass_id: c for c in s.scalars(select(PassClaim))}
        assert set(rows) == {p["pass_id"] for p in passes}
        for p in passes:
            row = rows[p["pass_id"]]
            assert row.code_hash == hashlib.sha256(p["claim_code"].encode()).hexdigest()
            assert (row.claimed_at, row.holder_thumbprint, row.claims, row.holder_step) == (None, None, 0, 15)
        stored = " ".join(str(r) for table in ("pass_claims", "passes", "audit_log")
                          for r in s.execute(text(f"SELECT * FROM {table}")))
        assert not any(p["claim_code"] in stored for p in passes)
        assert s.scalar(select(IssuedPass.entries).where(IssuedPass.pass_id == passes[0]["pass_id"])) == 2
    # an unbound issue answers as it always did
    r = arena.post(f"{hub.url}/v1/admin/venues/arena/passes", timeout=TIMEOUT, json={
        "count": 1, "valid_from": time.time(), "valid_until": time.time() + 60})
    assert r.status_code == 201 and set(r.json()["passes"][0]) == {"pass_id", "text"}


def test_a_configured_public_url_makes_the_links(db_url: str) -> None:
    server = HubServer(db_url)
    server.app.state.public_url = claims.public_url("https://hub.example.org/")
    server.start()
    try:
        admin = server.admin()
        setup_venue(server, admin)
        (p,) = issue_bound(server, admin)
        assert p["claim_url"] == f"https://hub.example.org/wallet#claim={p['claim_code']}"
    finally:
        server.close()


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"record": False}, 422, "record must be true"),
    ({"holder_step": 4}, 422, "holder_step"),
    ({"holder_step": 301}, 422, "holder_step"),
    ({"zones": ["flor"]}, 404, "no zone 'flor'"),
    ({"valid_until": 0}, 409, "valid_until must be after valid_from"),
])
def test_bound_issuing_refuses_what_signing_would(hub: HubServer, arena: requests.Session,
                                                  body: dict[str, Any], status: int, says: str) -> None:
    now = time.time()
    given = {"count": 1, "valid_from": now, "valid_until": now + 60, "holder_bound": True, **body}
    r = arena.post(f"{hub.url}/v1/admin/venues/arena/passes", json=given, timeout=TIMEOUT)
    assert r.status_code == status and says in r.text, r.text
    with hub.session() as s:
        assert s.scalars(select(PassClaim)).all() == []


# -- claiming -------------------------------------------------------------------------------------------


def test_a_claimed_pass_verifies_with_the_venues_keys_and_carries_the_holders_key(
        hub: HubServer, arena: requests.Session) -> None:
    (issued,) = issue_bound(hub, arena, holder_step=20, product="season", reentry=True)
    phone = ec.generate_private_key(ec.SECP256R1())
    # as typed: upper case, with spaces
    r = claim(hub, " ".join(re.findall(".{1,5}", issued["claim_code"].upper())), phone)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    answer = r.json()
    assert set(answer) == {"pass", "pass_id", "step", "venue", "valid_from", "valid_until"}
    assert (answer["pass_id"], answer["step"], answer["venue"]) == (issued["pass_id"], 20, "arena")
    trust = trust_of(hub, arena)
    bound = verify_signature(answer["pass"], trust)
    assert bound.pass_id_hex == issued["pass_id"]
    assert (bound.holder_key, bound.holder_step, bound.holder_verified) == (point(phone), 20, False)
    assert (bound.zones, bound.entries, bound.product, bound.reentry) == (("floor",), 2, "season", True)
    assert (bound.valid_from, bound.valid_until) == (answer["valid_from"], answer["valid_until"])
    shown = verify_pass(present(answer["pass"], phone), trust)  # what the phone shows, as a gate reads it
    assert shown.holder_verified and shown.pass_id_hex == issued["pass_id"]
    with hub.session() as s:
        row = s.get(PassClaim, issued["pass_id"])
        assert row is not None and row.claimed_at is not None and row.claims == 1
        jwk = jwk_of(phone)
        members = f'{{"crv":"P-256","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'  # RFC 7638, by hand
        assert row.holder_thumbprint == b64url(hashlib.sha256(members.encode()).digest())
        kid = s.scalar(select(IssuedPass.kid).where(IssuedPass.pass_id == issued["pass_id"]))
        assert kid == bound.kid.hex()


def test_a_code_is_claimed_once_from_any_device(hub: HubServer, arena: requests.Session) -> None:
    (issued,) = issue_bound(hub, arena)
    phone = ec.generate_private_key(ec.SECP256R1())
    assert claim(hub, issued["claim_code"], phone).status_code == 200
    refused(claim(hub, issued["claim_code"], ec.generate_private_key(ec.SECP256R1())), 409, "claim_taken")
    refused(claim(hub, issued["claim_code"], phone), 409, "claim_taken")  # the same phone again too
    with hub.session() as s:
        assert s.scalars(select(PassClaim.claims)).one() == 1


def test_two_devices_racing_get_one_pass(hub: HubServer, arena: requests.Session) -> None:
    (issued,) = issue_bound(hub, arena)
    devices = 6
    start = threading.Barrier(devices)
    answers: list[requests.Response] = []

    def device() -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        start.wait()
        answers.append(claim(hub, issued["claim_code"], key))

    threads = [threading.Thread(target=device) for _ in range(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [200] + [409] * (devices - 1)
    assert all(r.json()["code"] == "claim_taken" for r in answers if r.status_code == 409)
    with hub.session() as s:
        assert s.scalars(select(PassClaim.claims)).one() == 1


def test_a_claim_waits_for_one_in_flight_and_then_finds_it_taken(hub: HubServer, arena: requests.Session,
                                                                 db_url: str) -> None:
    """Two connections: the first claims and holds its transaction open; the second claims the
    same code meanwhile. On PostgreSQL it is seen waiting on the first's row lock; on SQLite
    behind the first's write transaction. The first commits: the second is ``claim_taken``."""
    (issued,) = issue_bound(hub, arena)
    first = hub.session()
    audit.act_as(first, WALLET)
    claims.claim(first, issued["claim_code"], jwk_of(ec.generate_private_key(ec.SECP256R1())))
    outcome: list[BaseException | claims.Claimed] = []

    def second() -> None:
        with hub.session() as s:
            audit.act_as(s, WALLET)
            try:
                phone = jwk_of(ec.generate_private_key(ec.SECP256R1()))
                outcome.append(claims.claim(s, issued["claim_code"], phone))
                s.commit()
            except Exception as exc:  # kept, so that a failure shows here and not as a missing wait
                outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    if db_url.startswith("postgresql"):
        # Each look in a transaction of its own: PostgreSQL keeps the pg_stat_activity a transaction
        # first read until it ends, so a watcher that looked once before the second claim reached
        # the lock would never see it wait (two loaded CI runs failed so, a look too early).
        with hub.engine.connect() as watch:
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                waiting = watch.execute(WAITING).scalar()
                watch.rollback()
                if waiting:
                    break
                assert not outcome, f"the second claim ended without waiting for the first: {outcome}"
                time.sleep(0.01)
            else:
                raise AssertionError("the second claim was never seen waiting on the first's row lock")
    assert not outcome, f"the second claim ended without waiting for the first: {outcome}"
    first.commit()
    first.close()
    thread.join(TIMEOUT)
    (result,) = outcome
    assert isinstance(result, claims.ClaimRefused) and result.code == "claim_taken", result


def test_wrong_codes_and_forms(hub: HubServer, arena: requests.Session) -> None:
    (issued,) = issue_bound(hub, arena)
    phone = ec.generate_private_key(ec.SECP256R1())
    for code in ("a" * 26, "", "a" * 25, "1" * 26, issued["claim_code"][:-1] + "-"):
        refused(claim(hub, code, phone), 404, "claim_unknown")
    good = jwk_of(phone)
    other = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    bad_keys: list[Any] = [
        {**good, "x": good["y"]},  # a point off the curve
        {**good, "crv": "P-384"}, {**good, "kty": "RSA"}, {**good, "x": good["x"][:-2]},
        {**good, "x": b64url(other.x.to_bytes(48, "big"))},
        {**good, "x": "!" * 43}, {**good, "d": good["x"]},  # a private key sent along
        {"kty": "EC", "crv": "P-256", "x": good["x"]}, {**good, "y": 5}, "a key", [], None,
    ]
    for bad in bad_keys:
        refused(claim(hub, issued["claim_code"], bad), 422, "claim_bad_key")
    for body in (b"", b"{", b"[]", b'{"public_key": {}}', b'{"code": 5, "public_key": {}}', b"\xff"):
        r = requests.post(f"{hub.url}/v1/wallet/claim", data=body, timeout=TIMEOUT)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] in ("claim_bad_request", "claim_bad_key"), (body, r.text)
    r = requests.post(f"{hub.url}/v1/wallet/claim", data=b"{" + b" " * 5000 + b"}", timeout=TIMEOUT)
    refused(r, 413, "claim_bad_request")
    # none of it spent the code
    assert claim(hub, issued["claim_code"], phone).status_code == 200


def test_revoked_and_expired_passes_cannot_be_claimed(hub: HubServer, arena: requests.Session) -> None:
    cancelled, kept = issue_bound(hub, arena, count=2)
    r = arena.post(f"{hub.url}/v1/admin/venues/arena/revocations", json={"pass_ids": [cancelled["pass_id"]]},
                   timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    phone = ec.generate_private_key(ec.SECP256R1())
    refused(claim(hub, cancelled["claim_code"], phone), 410, "claim_revoked")
    now = time.time()
    (old,) = issue_bound(hub, arena, valid_from=now - 7200, valid_until=now - 1)
    refused(claim(hub, old["claim_code"], phone), 410, "claim_expired")
    # an operator's block is not a revocation: the pass is claimed (gates refuse it while blocked)
    r = arena.post(f"{hub.url}/v1/admin/venues/arena/blocks", json={"pass_ids": [kept["pass_id"]]},
                   timeout=TIMEOUT)
    assert r.status_code == 200 and claim(hub, kept["claim_code"], phone).status_code == 200


def test_a_venue_without_a_usable_key_cannot_sign_a_claim(hub: HubServer, arena: requests.Session) -> None:
    (issued,) = issue_bound(hub, arena)
    kid = arena.get(f"{hub.url}/v1/admin/venues/arena/keys", timeout=TIMEOUT).json()[-1]["kid"]
    assert arena.post(f"{hub.url}/v1/admin/venues/arena/keys/{kid}/retire", json={},
                      timeout=TIMEOUT).status_code == 200
    phone = ec.generate_private_key(ec.SECP256R1())
    refused(claim(hub, issued["claim_code"], phone), 503, "claim_cannot_sign")
    # a new key: the claim is signed with it (and the code was not spent)
    assert arena.post(f"{hub.url}/v1/admin/venues/arena/keys/rotate", json={}, timeout=TIMEOUT).ok
    r = claim(hub, issued["claim_code"], phone)
    assert r.status_code == 200
    assert verify_signature(r.json()["pass"], trust_of(hub, arena)).kid.hex() != kid


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_wrong_codes_are_limited_per_address(hub: HubServer, arena: requests.Session) -> None:
    clock = Clock()
    hub.app.state.claim_limiter = claims.Limiter(burst=3, refill_s=60.0, clock=clock)
    (issued,) = issue_bound(hub, arena)
    phone = ec.generate_private_key(ec.SECP256R1())
    refused(claim(hub, issued["claim_code"], {"kty": "RSA"}), 422, "claim_bad_key")  # spends nothing
    for _ in range(3):
        refused(claim(hub, "b" * 26, phone), 404, "claim_unknown")
    r = claim(hub, issued["claim_code"], phone)  # the right code too, until a try is back
    refused(r, 429, "claim_rate_limited")
    assert r.headers["retry-after"] == "60"
    clock.t += 30
    assert claim(hub, "b" * 26, phone).headers["retry-after"] == "30"
    clock.t += 30
    assert claim(hub, issued["claim_code"], phone).status_code == 200
    refused(claim(hub, issued["claim_code"], phone), 409, "claim_taken")  # spends nothing either
    refused(claim(hub, "b" * 26, phone), 404, "claim_unknown")
    refused(claim(hub, "b" * 26, phone), 429, "claim_rate_limited")


def test_the_limiter_counts_ipv6_networks_and_forgets_the_oldest_address() -> None:
    clock = Clock()
    limiter = claims.Limiter(burst=1, refill_s=10.0, max_addresses=2, clock=clock)
    limiter.wrong("2001:db8:1:2::5")
    assert limiter.wait_s("2001:db8:1:2:ffff::1") == 10  # the same /64
    assert limiter.wait_s("2001:db8:1:3::5") == 0
    assert limiter.wait_s("::ffff:192.0.2.1") == 0
    limiter.wrong("::ffff:192.0.2.1")
    assert limiter.wait_s("192.0.2.1") == 10  # an IPv4 client seen through an IPv6 socket
    limiter.wrong("198.51.100.7")  # a third address: the oldest goes
    assert limiter.wait_s("2001:db8:1:2::5") == 0
    assert limiter.wait_s(None) == 0 and limiter.wait_s("not an address") == 0


# -- resetting --------------------------------------------------------------------------------------


def test_an_operator_resets_a_claim_and_the_old_device_keeps_its_pass(hub: HubServer,
                                                                     arena: requests.Session) -> None:
    (issued,) = issue_bound(hub, arena)
    old_phone, new_phone = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    first = claim(hub, issued["claim_code"], old_phone).json()
    url = f"{hub.url}/v1/admin/venues/arena/passes/{issued['pass_id']}/claim/reset"
    operator = requests.Session()
    operator.headers["Authorization"] = f"Bearer {hub.api_key(Role.OPERATOR, ('arena',), name='door')}"
    r = operator.post(url, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    reset = r.json()
    assert reset["pass_id"] == issued["pass_id"] and CODE.fullmatch(reset["claim_code"])
    assert reset["claim_url"] == f"{hub.url}/wallet#claim={reset['claim_code']}"
    assert "revoke the pass" in reset["note"]
    refused(claim(hub, issued["claim_code"], new_phone), 404, "claim_unknown")  # the old code is void
    second = claim(hub, reset["claim_code"], new_phone)
    assert second.status_code == 200
    trust = trust_of(hub, arena)
    for answer, phone in ((first, old_phone), (second.json(), new_phone)):
        p = verify_pass(present(answer["pass"], phone), trust)
        assert p.pass_id_hex == issued["pass_id"] and p.holder_key == point(phone)
    with hub.session() as s:
        assert s.scalars(select(PassClaim.claims)).one() == 2
    # refusals: not holder-bound, unknown, malformed, revoked
    r = arena.post(f"{hub.url}/v1/admin/venues/arena/passes", timeout=TIMEOUT, json={
        "count": 1, "valid_from": time.time(), "valid_until": time.time() + 60})
    plain = r.json()["passes"][0]["pass_id"]
    r = operator.post(url.replace(issued["pass_id"], plain), timeout=TIMEOUT)
    assert r.status_code == 409 and "not holder-bound" in r.text
    r = operator.post(url.replace(issued["pass_id"], "0" * 32), timeout=TIMEOUT)
    assert r.status_code == 404
    assert operator.post(url.replace(issued["pass_id"], "xyz"), timeout=TIMEOUT).status_code == 422
    arena.post(f"{hub.url}/v1/admin/venues/arena/revocations", json={"pass_ids": [issued["pass_id"]]},
               timeout=TIMEOUT)
    r = operator.post(url, timeout=TIMEOUT)
    assert r.status_code == 409 and "revoked" in r.text


def test_claims_and_resets_are_audited_without_codes_pass_ids_or_keys(hub: HubServer,
                                                                    arena: requests.Session) -> None:
    (issued,) = issue_bound(hub, arena)
    phone = ec.generate_private_key(ec.SECP256R1())
    assert claim(hub, issued["claim_code"], phone).status_code == 200
    reset = arena.post(f"{hub.url}/v1/admin/venues/arena/passes/{issued['pass_id']}/claim/reset",
                       timeout=TIMEOUT).json()
    with hub.session() as s:
        entries = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        thumbprint = s.scalars(select(PassClaim.holder_thumbprint)).one()
    actions = [(e.action, e.actor, e.source) for e in entries][-3:]
    assert actions[0][0] == "passes.issue"
    assert actions[1] == ("pass.claim", "wallet", None)  # a holder: no address kept
    assert actions[2][:1] == ("pass.claim_reset",) and actions[2][1].startswith("apikey:")
    written = json.dumps([[e.target, e.detail] for e in entries])
    for secret in (issued["claim_code"], reset["claim_code"], issued["pass_id"], jwk_of(phone)["x"]):
        assert secret not in written
    assert thumbprint is None  # the reset cleared the claim it replaced


# -- the CLI -------------------------------------------------------------------------------------------


def test_the_cli_writes_claim_links_and_resets_a_claim(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    database = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.delenv(claims.ENV_PUBLIC_URL, raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main(["--database", database, "--epoch", *argv])
        out, err = capsys.readouterr()
        return status, out, err

    for argv in (["venue", "create", "arena"], ["zone", "create", "arena", "floor"], ["key", "add", "arena"]):
        assert run(*argv)[0] == 0
    issue = ["pass", "issue", "arena", "--count", "2", "--valid-until", "+4h", "--zone", "floor",
             "--holder-bound", "--out"]
    status, _, err = run(*issue, str(tmp_path / "none"))
    assert status == 1 and "--public-url" in err and "PASSGATE_HUB_PUBLIC_URL" in err
    assert not (tmp_path / "none").exists()
    monkeypatch.setenv(claims.ENV_PUBLIC_URL, "https://hub.example.org")
    status, out, err = run(*issue, str(tmp_path / "links"), "--holder-step", "30")
    assert status == 0, err
    assert json.loads(out)["holder_bound"] is True
    rows = list(csv.DictReader((tmp_path / "links" / "claims.csv").open()))
    assert len(rows) == 2
    for row in rows:
        assert row["claim_url"] == f"https://hub.example.org/wallet#claim={row['claim_code']}"
        assert (tmp_path / "links" / row["qr_file"]).stat().st_size > 0
    status, out, err = run("issue", "arena", "--count", "1", "--valid-until", "+4h", "--holder-bound",
                           "--no-record", "--out", str(tmp_path / "x"))
    assert status == 1 and "drop --no-record" in err
    status, out, err = run("pass", "claim-reset", "arena", rows[0]["pass_id"], "--public-url", "https://h.test")
    assert status == 0, err
    reset = json.loads(out)
    assert reset["claim_url"] == f"https://h.test/wallet#claim={reset['claim_code']}"
    assert reset["claim_code"] != rows[0]["claim_code"]
    engine = db.make_engine(database)
    try:
        with db.session_factory(engine)() as s:
            steps = {c.pass_id: (c.holder_step, c.code_hash) for c in s.scalars(select(PassClaim))}
    finally:
        engine.dispose()
    assert steps[rows[0]["pass_id"]] == (30, hashlib.sha256(reset["claim_code"].encode()).hexdigest())
    status, _, err = run("pass", "claim-reset", "arena", "0" * 32)
    assert (status, err) == (1, f"passgate-hub pass claim-reset: no pass {'0' * 32} issued by this hub for "
                                "'arena'\n")


# -- the wallet's files ---------------------------------------------------------------------------------


def test_the_wallet_files_are_served_without_auth_and_nothing_else(hub: HubServer, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"index.html": "<!doctype html><title>w</title>", "wallet.js": "1", "sw.js": "2",
             "manifest.webmanifest": "{}", "icon.svg": "<svg/>"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "notes.txt").write_text("not served")
    monkeypatch.setattr(wallet, "FILES", tmp_path)
    types = {"index.html": "text/html", "wallet.js": "text/javascript", "sw.js": "text/javascript",
             "manifest.webmanifest": "application/manifest+json", "icon.svg": "image/svg+xml"}
    for path, name in (("/wallet", "index.html"), ("/wallet/", "index.html"),
                       *((f"/wallet/{n}", n) for n in files if n != "index.html")):
        r = requests.get(hub.url + path, timeout=TIMEOUT)
        assert r.status_code == 200 and r.text == files[name], path
        assert r.headers["content-type"].startswith(types[name]), path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers.get("service-worker-allowed") == ("/wallet" if name == "sw.js" else None)
    for path in ("/wallet/notes.txt", "/wallet/..%2Fclaims.py", "/wallet/missing.js", "/wallet/.hidden.js"):
        assert requests.get(hub.url + path, timeout=TIMEOUT).status_code == 404, path


def test_every_file_of_the_wallet_is_package_data() -> None:
    """setup.cfg's patterns cover each file the wallet directory holds (an installed hub serves them)."""
    setup = (Path(__file__).parents[2] / "setup.cfg").read_text()
    line = re.search(r"^passgate_hub\.wallet = (.+)$", setup, re.MULTILINE)
    assert line is not None and re.search(r"^\s+passgate_hub\.wallet$", setup, re.MULTILINE)
    suffixes = {p.strip().removeprefix("*") for p in line.group(1).split(",")}
    for path in wallet.FILES.iterdir() if wallet.FILES.is_dir() else ():
        if path.is_file() and not path.name.startswith(".") and path.suffix != ".py":  # .py: a module
            assert path.suffix in suffixes, path.name


def test_readmes_claim_example_runs(tmp_path: Path) -> None:
    from tests.test_readme import run_example

    result = run_example("hub-claims", tmp_path)
    rows = list(csv.DictReader((tmp_path / "season" / "claims.csv").open()))
    reset = json.loads(result.stdout[result.stdout.rindex("{\n"):])  # the last command's answer
    links = [r["claim_url"] for r in rows] + [reset["claim_url"]]
    assert len(set(links)) == 3 and all(u.startswith("https://hub.example.org/wallet#claim=") for u in links)


def test_readme_states_the_limiters_defaults() -> None:
    from tests.test_readme import README

    limiter, words = claims.Limiter(), " ".join(README.split())
    assert f"{limiter.burst} tries, one more every {limiter.refill_s:.0f} seconds" in words
    assert f"{claims.STEPS[0]} to {claims.STEPS[1]}, default {claims.DEFAULT_STEP}" in words


def test_the_cli_through_the_api_writes_the_hubs_links(
        hub: HubServer, arena: requests.Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key"
    key.write_text(hub.api_key(Role.OPERATOR, ("arena",)))
    far = ["--url", hub.url, "--api-key-file", str(key), "--epoch"]
    status = cli.main([*far, "issue", "arena", "--count", "2", "--valid-until", "+4h", "--zone", "floor",
                       "--holder-bound", "--holder-step", "10", "--no-qr", "--out", str(tmp_path / "links")])
    out, err = capsys.readouterr()
    assert status == 0 and json.loads(out)["holder_bound"] is True, err
    rows = list(csv.DictReader((tmp_path / "links" / "claims.csv").open()))
    assert [r["claim_url"] for r in rows] == [f"{hub.url}/wallet#claim={r['claim_code']}" for r in rows]
    answer = claim(hub, rows[0]["claim_code"], ec.generate_private_key(ec.SECP256R1())).json()
    assert answer["step"] == 10 and answer["pass_id"] == rows[0]["pass_id"]
    status = cli.main([*far, "pass", "claim-reset", "arena", rows[0]["pass_id"], "--public-url", "https://h.test"])
    out, err = capsys.readouterr()
    assert status == 0, err
    reset = json.loads(out)
    assert reset["claim_url"] == f"https://h.test/wallet#claim={reset['claim_code']}"
    assert claim(hub, reset["claim_code"], ec.generate_private_key(ec.SECP256R1())).status_code == 200
    status = cli.main([*far, "pass", "claim-reset", "arena", "0" * 32])
    assert status == 1 and "(HTTP 404)" in capsys.readouterr().err
