"""Keys the database cannot leak: the hub's private keys are sealed with a sealing key (KEK) kept
outside the database, on SQLite and PostgreSQL, through the real hub over loopback HTTP and the
real CLI. A copy of the database holds nothing a grep finds; signing works after a restart with
the KEK and fails with a reason without it; the migration seals plain keys; rotation re-seals."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from passgate import TrustStore, generate_private_key, key_id, verify_pass
from passgate.cose import PrivateKey
from passgate.keys import public_pem
from passgate_hub import cli, db, keys, sealing
from passgate_hub.models import IssuerKey

from .leaks import database_bytes, leaks
from .server import HubServer, issue

TIMEOUT = 10
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def kek_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sealing key in a file the hub is pointed at (no other KEK configured)."""
    monkeypatch.delenv(sealing.ENV_KEY, raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "hub.kek"
    sealing.write_kek_file(path)
    monkeypatch.setenv(sealing.ENV_FILE, str(path))
    return path


@pytest.fixture
def hub_cli(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(database: str, *argv: str) -> tuple[int, str, str]:
        status = cli.main(["--database", database, *argv])
        out, err = capsys.readouterr()
        return status, out, err
    return run


def held_private_keys(hub: HubServer) -> list[PrivateKey]:
    """Every private key the hub holds, opened with its sealing key (as only the test may)."""
    with hub.session() as s:
        kek = keys.kek_for(s)
        rows = s.scalars(sa.select(IssuerKey).where(IssuerKey.private_sealed.is_not(None))).all()
        return [sealing.open_sealed(kek, row.kid, row.private_sealed) for row in rows]  # type: ignore[arg-type]


def setup(hub: HubServer, admin: requests.Session, venue: str = "arena") -> None:
    assert admin.post(f"{hub.url}/v1/admin/venues", json={"name": venue}, timeout=TIMEOUT).status_code == 201
    r = admin.post(f"{hub.url}/v1/admin/venues/{venue}/zones", json={"name": "floor"}, timeout=TIMEOUT)
    assert r.status_code == 201
    r = admin.post(f"{hub.url}/v1/admin/venues/{venue}/keys", json={"generate": True}, timeout=TIMEOUT)
    assert r.status_code == 201 and r.json()["has_private"], r.text


def trust_of(hub: HubServer, admin: requests.Session, venue: str = "arena") -> TrustStore:
    trust = TrustStore()
    for k in admin.get(f"{hub.url}/v1/admin/venues/{venue}/keys", timeout=TIMEOUT).json():
        if k["purpose"] == "passes":
            pem = admin.get(f"{hub.url}/v1/admin/venues/{venue}/keys/{k['kid']}.pem", timeout=TIMEOUT).text
            trust.add(load_pem_public_key(pem.encode()))  # type: ignore[arg-type]
    return trust


def test_the_database_holds_no_private_key_material(hub: HubServer, db_url: str) -> None:
    """Venues (each with a deny-list key), hub-held Ed25519 and P-256 pass keys, a rotation,
    passes issued and revoked: neither the SQLite file with its log nor a pg_dump holds any form
    of any private key, while the public keys are found there (the search finds what is there)."""
    admin = hub.admin()
    setup(hub, admin, "arena")
    setup(hub, admin, "stadium")
    r = admin.post(f"{hub.url}/v1/admin/venues/stadium/keys", json={"generate": True, "alg": "es256"},
                   timeout=TIMEOUT)
    assert r.status_code == 201
    assert admin.post(f"{hub.url}/v1/admin/venues/arena/keys/rotate", json={"alg": "es256"},
                      timeout=TIMEOUT).status_code == 201
    passes = issue(hub, admin, 3)
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/revocations",
                   json={"pass_ids": [passes[0]["pass_id"]]}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["changed"] == 1
    held = held_private_keys(hub)
    assert len(held) == 6  # 2 deny-list keys, arena's two pass keys, stadium's two
    assert sum(isinstance(k, ec.EllipticCurvePrivateKey) for k in held) == 2  # P-256 and Ed25519 both
    dump = database_bytes(db_url)
    assert leaks(dump, held) == []
    for key in held:  # the control: what the database does hold, the same search finds
        assert public_pem(key).decode().splitlines()[1].encode() in dump
        assert key_id(key).hex().encode() in dump
    # the passes still verify with the keys the hub publishes
    assert verify_pass(passes[1]["text"], trust_of(hub, admin)).pass_id_hex == passes[1]["pass_id"]


def test_signing_after_a_restart_needs_the_sealing_key(db_url: str, kek_file: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       hub_cli: Run) -> None:
    hub = HubServer(db_url).start()
    try:
        admin = hub.admin()
        setup(hub, admin)
        r = admin.post(f"{hub.url}/v1/admin/venues/arena/gates", json={"gate_id": "g1", "zone": "floor"},
                       timeout=TIMEOUT)
        token = r.json()["token"]
        issue(hub, admin)
    finally:
        hub.close()

    hub = HubServer(db_url).start()  # restarted with the sealing key: it signs
    try:
        admin = hub.admin()
        (p,) = issue(hub, admin)
        assert verify_pass(p["text"], trust_of(hub, admin)).pass_id_hex == p["pass_id"]
    finally:
        hub.close()

    other = tmp_path / "other.kek"
    sealing.write_kek_file(other)
    for configure, why in ((lambda: monkeypatch.setenv(sealing.ENV_FILE, str(tmp_path / "gone.kek")),
                            "does not exist"),
                           (lambda: monkeypatch.setenv(sealing.ENV_FILE, str(other)),
                            "sealed with sealing key")):
        configure()
        hub = HubServer(db_url).start()
        try:
            admin = hub.admin()
            gate = requests.Session()
            gate.headers["Authorization"] = f"Bearer {token}"
            # what does not sign keeps working
            for path in ("venues", "venues/arena/keys", "venues/arena/counts", "venues/arena/events",
                         "gates"):
                assert admin.get(f"{hub.url}/v1/admin/{path}", timeout=TIMEOUT).status_code == 200, path
            r = gate.get(f"{hub.url}/v1/gates/g1/bundle", timeout=TIMEOUT)
            assert r.status_code == 200 and len(r.json()["keys"]) == 2
            assert admin.post(f"{hub.url}/v1/admin/venues/arena/zones", json={"name": f"vip-{len(why)}"},
                              timeout=TIMEOUT).status_code == 201
            # what signs is refused with the reason
            body = {"count": 1, "valid_from": time.time(), "valid_until": time.time() + 60}
            for path, payload in (("venues/arena/passes", body),
                                  ("venues/arena/keys", {"generate": True}),
                                  ("venues", {"name": f"new-{len(why)}"})):
                r = admin.post(f"{hub.url}/v1/admin/{path}", json=payload, timeout=TIMEOUT)
                assert r.status_code == 503 and why in r.json()["detail"], (path, r.text)
                assert "the hub cannot sign" in r.json()["detail"]
        finally:
            hub.close()
        status, out, err = hub_cli(db_url, "issue", "arena", "--count", "1", "--valid-until", "+1h",
                                   "--no-qr", "--out", str(tmp_path / f"out-{len(why)}"))
        assert status == 1 and out == "" and why in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        status, out, _ = hub_cli(db_url, "venue", "list")
        assert status == 0 and '"arena"' in out


def _plain_database(url: str) -> list[PrivateKey]:
    """A database at revision 0002 (before sealing) with a venue whose keys are plain PEM, as an
    older hub stored them: its deny-list key, an Ed25519 and a P-256 pass key."""
    engine = db.make_engine(url)
    db.migrate(engine, "0002")
    made = [generate_private_key("ed25519"), generate_private_key("ed25519"), generate_private_key("es256")]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO venues (id, name, keys_rev, created_at) VALUES (1, 'arena', 3, 0)"))
        for number, (key, purpose) in enumerate(zip(made, ("denylist", "passes", "passes"), strict=True)):
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
            conn.execute(sa.text("INSERT INTO issuer_keys (id, venue_id, kid, purpose, issuer, public_pem, "
                                 "private_pem, created_at) VALUES (:id, 1, :kid, :purpose, NULL, :pub, "
                                 ":pem, 0)"),
                         {"id": number + 1, "kid": key_id(key).hex(), "purpose": purpose,
                          "pub": public_pem(key).decode(), "pem": pem})
        for kind in ("revoked", "blocked"):
            conn.execute(sa.text("INSERT INTO deny_lists (venue_id, kind, version, issued_at) "
                                 "VALUES (1, :kind, 0, 0)"), {"kind": kind})
    engine.dispose()
    return made


def test_the_migration_seals_plain_keys_and_refuses_without_a_sealing_key(
        db_url: str, kek_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_cli: Run) -> None:
    made = _plain_database(db_url)
    assert leaks(database_bytes(db_url), made)  # the control: plain keys are found

    monkeypatch.setenv(sealing.ENV_FILE, str(tmp_path / "missing.kek"))
    engine = db.make_engine(db_url)
    with pytest.raises(sealing.SealingError, match="3 private keys in plain text"):
        db.migrate(engine)
    status, out, err = hub_cli(db_url, "venue", "list")  # the hub refuses to start, in one line
    assert status == 1 and out == "" and "3 private keys in plain text" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    with engine.connect() as conn:  # nothing half done: still the old revision, keys as they were
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0002"
        assert conn.scalar(sa.text("SELECT count(*) FROM issuer_keys WHERE private_pem IS NOT NULL")) == 3

    monkeypatch.setenv(sealing.ENV_FILE, str(kek_file))
    db.migrate(engine)
    engine.dispose()
    assert leaks(database_bytes(db_url), made) == []
    hub = HubServer(db_url).start()
    try:
        assert sorted(k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) for k in held_private_keys(hub)) == \
            sorted(k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()) for k in made)
        admin = hub.admin()
        assert admin.post(f"{hub.url}/v1/admin/venues/arena/zones", json={"name": "floor"},
                          timeout=TIMEOUT).status_code == 201
        (p,) = issue(hub, admin)  # signed with the newest migrated pass key (the P-256 one)
        trust = TrustStore()
        trust.add(made[2].public_key())
        assert verify_pass(p["text"], trust).pass_id_hex == p["pass_id"]
        r = admin.post(f"{hub.url}/v1/admin/venues/arena/revocations", json={"pass_ids": [p["pass_id"]]},
                       timeout=TIMEOUT)
        assert r.status_code == 200  # and the migrated deny-list key signs the list
    finally:
        hub.close()
    assert leaks(database_bytes(db_url), made) == []


def test_rotating_the_sealing_key_reseals_every_key(db_url: str, kek_file: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, hub_cli: Run) -> None:
    for argv in (["venue", "create", "arena"], ["venue", "create", "stadium"],
                 ["key", "add", "arena"], ["key", "add", "stadium", "--alg", "es256"]):
        assert hub_cli(db_url, *argv)[0] == 0
    old = sealing.read_kek_file(kek_file)
    new_file = tmp_path / "new.kek"
    status, out, _ = hub_cli(db_url, "seal", "new-key", str(new_file))
    assert status == 0 and stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert hub_cli(db_url, "seal", "new-key", str(new_file))[0] == 1  # never overwritten
    new = sealing.read_kek_file(new_file)

    status, out, err = hub_cli(db_url, "seal", "rotate", "--new-key-file", str(new_file))
    assert status == 0, err
    assert '"resealed": 4' in out and str(new_file) in err  # where to point the hub now

    engine = db.make_engine(db_url)
    with db.session_factory(engine)() as s:
        rows = s.scalars(sa.select(IssuerKey).where(IssuerKey.private_sealed.is_not(None))).all()
        assert len(rows) == 4
        for row in rows:
            assert row.private_sealed is not None
            assert sealing.blob_kek_id(row.private_sealed) == new.kek_id
            with pytest.raises(sealing.SealingError, match="was sealed with sealing key"):
                sealing.open_sealed(old, row.kid, row.private_sealed)
            sealing.open_sealed(new, row.kid, row.private_sealed)
    out_dir = tmp_path / "passes"
    status, _, err = hub_cli(db_url, "issue", "arena", "--count", "1", "--valid-until", "+1h", "--no-qr",
                             "--out", str(out_dir))
    assert status == 1 and "was sealed with sealing key" in err  # the old key no longer opens them
    monkeypatch.setenv(sealing.ENV_FILE, str(new_file))
    status, _, err = hub_cli(db_url, "issue", "arena", "--count", "1", "--valid-until", "+1h", "--no-qr",
                             "--out", str(out_dir))
    assert status == 0, err
    status, out, _ = hub_cli(db_url, "seal", "status")
    assert status == 0 and '"matches_all_keys": true' in out

    # a sealed key moved to another row does not open there; a rotation that meets one changes nothing
    with engine.begin() as conn:
        blobs = dict(conn.execute(sa.text("SELECT id, private_sealed FROM issuer_keys "
                                          "WHERE private_sealed IS NOT NULL ORDER BY id")).all())
        first, second = list(blobs)[:2]
        conn.execute(sa.text("UPDATE issuer_keys SET private_sealed = :b WHERE id = :i"),
                     {"b": blobs[first], "i": second})
    third = tmp_path / "third.kek"
    sealing.write_kek_file(third)
    status, _, err = hub_cli(db_url, "seal", "rotate", "--new-key-file", str(third))
    assert status == 1 and "does not open" in err
    with engine.connect() as conn:
        after = dict(conn.execute(sa.text("SELECT id, private_sealed FROM issuer_keys "
                                          "WHERE private_sealed IS NOT NULL ORDER BY id")).all())
    assert {i: sealing.blob_kek_id(b) for i, b in after.items()} == dict.fromkeys(after, new.kek_id)
    engine.dispose()


def test_zero_setup_sqlite_makes_its_sealing_key_beside_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_cli: Run,
        caplog: pytest.LogCaptureFixture) -> None:
    """README's flow: no sealing key configured, an SQLite file: the key is made beside it (0600)
    with a log line; once it is gone the hub refuses to sign and never makes a second one."""
    for name in (sealing.ENV_FILE, sealing.ENV_KEY, "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    default = tmp_path / "hub.db.kek"
    status, _, err = hub_cli(url, "venue", "create", "arena")
    assert status == 0 and default.exists() and "created the sealing key" in caplog.text
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert hub_cli(url, "key", "add", "arena")[0] == 0
    status, out, _ = hub_cli(url, "seal", "status")
    assert status == 0 and str(default) in out and '"matches_all_keys": true' in out

    default.rename(tmp_path / "away.kek")
    status, _, err = hub_cli(url, "venue", "create", "stadium")
    assert status == 1 and "does not exist" in err and not default.exists()
    assert hub_cli(url, "venue", "list")[0] == 0

    (tmp_path / "away.kek").rename(default)  # the default key follows a rotation by itself
    status, _, _ = hub_cli(url, "seal", "new-key", str(tmp_path / "next.kek"))
    status, _, err = hub_cli(url, "seal", "rotate", "--new-key-file", str(tmp_path / "next.kek"))
    assert status == 0 and "now holds the new sealing key" in err
    assert default.read_text() == (tmp_path / "next.kek").read_text()
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    status, _, err = hub_cli(url, "issue", "arena", "--count", "1", "--valid-until", "+1h", "--no-qr",
                             "--out", str(tmp_path / "p"))
    assert status == 0, err


def test_the_sealing_key_comes_from_the_environment_or_a_systemd_credential(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (sealing.ENV_FILE, sealing.ENV_KEY, "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    url = "postgresql+psycopg://hub@127.0.0.1/hub"
    with pytest.raises(sealing.SealingError, match="no sealing key"):
        sealing.load_kek(url, create=True)  # PostgreSQL: no default place for one
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    sealing.write_kek_file(credentials / sealing.CREDENTIAL)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    from_credential = sealing.load_kek(url)
    assert from_credential.key == sealing.read_kek_file(credentials / sealing.CREDENTIAL).key
    text = sealing.new_kek_text()
    monkeypatch.setenv(sealing.ENV_KEY, text.strip())  # the variable wins over the credential
    assert sealing.load_kek(url).key == sealing.parse_kek(text, "x").key
    monkeypatch.setenv(sealing.ENV_KEY, "c2hvcnQ=")
    with pytest.raises(sealing.SealingError, match="not a sealing key"):
        sealing.load_kek(url)
    key = generate_private_key()
    blob = sealing.seal(from_credential, "00" * 8, key)
    assert sealing.open_sealed(from_credential, "00" * 8, blob).public_key() == key.public_key()
    for changed in (blob[:-1] + bytes([blob[-1] ^ 1]), blob[:30] + bytes([blob[30] ^ 1]) + blob[31:]):
        with pytest.raises(sealing.SealingError, match="does not open"):
            sealing.open_sealed(from_credential, "00" * 8, changed)
    with pytest.raises(sealing.SealingError, match="does not open"):
        sealing.open_sealed(from_credential, "11" * 8, blob)  # another row's kid
    with pytest.raises(sealing.SealingError, match="format"):
        sealing.open_sealed(from_credential, "00" * 8, b"\x02" + blob[1:])
