"""README's "Privacy" section, claim by claim, against reality: each row of its table names a claim
that a test here checks (``@claim``), and the two sets must be equal. The columns of every table,
on the hub (a database migrated on SQLite and PostgreSQL, and the ORM's metadata) and on the gate
(a real journal), must be exactly those the section lists; the defaults it states must be the
code's; rows older than it says are kept must be gone after a purge (with an injected clock)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, inspect, select, text
from sqlalchemy.orm import Session

from passgate import generate_private_key, wire
from passgate.pretix import issue_sig1, seed_pass_id
from passgate.pretix_sync import STATE_FILE, PretixClient, PretixSource, pull
from passgate_hub import audit, db, ingest, ops, retention
from passgate_hub.models import Alert, Base, EntryMinute, Event, Gate, IssuedPass
from passgated.config import parse_config
from passgated.journal import Journal
from tests.hub.fixtures import db_url
from tests.pretix_fake import EVENT, ORGANIZER, TOKEN, FakePretix, event_resource

__all__ = ["db_url"]

ROOT = Path(__file__).parents[1]
SECTION = (ROOT / "README.md").read_text().split("\n## Privacy\n", 1)[1].split("\n## ", 1)[0]
DAY = 86400.0
T0 = 1_900_000_000.0  # the hub's clock when the test's rows arrive
CHECKED: set[str] = set()


def claim(tag: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks the test that checks README's claim ``tag``."""
    CHECKED.add(tag)
    return lambda test: test


def claims() -> dict[str, tuple[list[str], list[list[str]], str]]:
    """Claim tag → (the tables named in "where", their columns in "holds" by ``;``, "kept")."""
    out = {}
    for line in SECTION.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            tables = re.findall(r"`([a-z_]+)`", cells[1])
            columns = [re.findall(r"`([a-z_]+)`", part) for part in cells[2].split(";")]
            out[cells[0].strip("`")] = (tables, columns, cells[3])
    return out


def promised(prefix: str) -> dict[str, set[str]]:
    """Table → columns, for every table of the claims whose tag starts with ``prefix``."""
    out: dict[str, set[str]] = {}
    for tag, (tables, columns, _) in claims().items():
        if tag.startswith(prefix) and tag != "gate.files":
            assert len(tables) == len(columns), f"{tag}: one column list per table, split by ;"
            out.update((table, set(cols)) for table, cols in zip(tables, columns, strict=True))
    return out


def test_every_claim_has_its_check_and_the_two_name_each_other() -> None:
    assert "tests/test_privacy_claims.py" in SECTION
    assert set(claims()) == CHECKED


def test_the_defaults_are_the_codes() -> None:
    number = {name: int(re.search(rf"`{re.escape(name)}`[^*]*\*\*(\d+)\*\*", SECTION).group(1))  # type: ignore[union-attr]
              for name in ("window_hours", "retention_days", "[journal] retention_days")}
    assert number["window_hours"] == retention.DEFAULT_WINDOW_HOURS
    assert number["retention_days"] == retention.DEFAULT_RETENTION_DAYS
    assert number["[journal] retention_days"] == parse_config({}).retention_days
    assert f"every {retention.PURGE_EVERY_S / 60:.0f} minutes" in SECTION
    assert f"at most {retention.CHUNKS_A_ROUND} transactions of {retention.CHUNK} rows" in SECTION
    assert retention.VALIDITY_GRACE_S == 3600 and "plus an hour" in SECTION
    assert f"deleted **{retention.AUDIT_RETENTION_DAYS}** days after `at`" in SECTION


def test_the_hub_holds_the_tables_and_columns_written_and_no_more(db_url: str) -> None:
    engine = db.make_engine(db_url)
    db.migrate(engine)
    try:
        schema = inspect(engine)
        held = {table: {c["name"] for c in schema.get_columns(table)} for table in schema.get_table_names()}
    finally:
        engine.dispose()
    assert held == promised("hub.")
    orm = {table.name: {c.name for c in table.columns} for table in Base.metadata.sorted_tables}
    assert orm == {t: c for t, c in held.items() if t != "alembic_version"}


def test_the_gate_journal_holds_the_tables_and_columns_written_and_no_more(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db", "g1") as journal:
        tables = [r[0] for r in journal.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        held = {t: {r[1] for r in journal.db.execute(f"PRAGMA table_info({t})")} for t in tables}
    assert held == promised("gate.")


# -- the hub's rows: older than written, gone -------------------------------------------------


def _arena(s: Session) -> tuple[Any, Gate]:
    venue = ops.create_venue(s, "arena")
    ops.create_zone(s, venue, "floor")
    ops.create_gate(s, venue, "arena-g1", "floor")
    s.flush()
    return venue, s.scalars(select(Gate)).one()


def _admitted(pass_id: str, t: float) -> list[dict[str, Any]]:
    base = {"gate_id": "arena-g1", "t": t, "direction": "entry", "pass_id": pass_id, "decision": None,
            "reason": None, "latency_ms": None, "detail": None, "entries": None}
    return [{**base, "event_id": f"d-{pass_id}", "kind": "decision", "decision": "admit", "reason": "admit"},
            {**base, "event_id": f"r-{pass_id}", "kind": "redeemed", "detail": f"rid-{pass_id}"}]


def _hub(db_url: str) -> Session:
    engine = db.make_engine(db_url)
    db.migrate(engine)
    session = db.session_factory(engine)()
    audit.act_as(session, audit.Actor("test", None))
    return session


def _purge(s: Session, now: float) -> retention.Purged:
    return retention.purge(s, now=now)[0]["arena"]


@claim("hub.events")
def test_hub_events_lose_pass_ids_after_the_window_and_go_after_the_retention(db_url: str) -> None:
    with _hub(db_url) as s:
        venue, gate = _arena(s)
        season = "5e" * 16
        s.add(IssuedPass(pass_id=season, venue_id=venue.id, kid="k", zones=[], valid_from=T0 - DAY,
                         valid_until=T0 + 90 * DAY, issued_at=T0 - DAY))
        rows = [e for p in ("a1" * 16, "a2" * 16, season) for e in _admitted(p, T0)]
        assert ingest.ingest(s, gate, rows, now=T0).stored == 6
        s.commit()
        window, kept = T0 + venue.window_hours * 3600 + 1, T0 + venue.retention_days * DAY + 1
        _purge(s, window - 2)
        assert all(e.pass_id for e in s.scalars(select(Event)))
        _purge(s, window)
        assert {e.pass_id for e in s.scalars(select(Event))} == {None, season}
        _purge(s, kept)
        left = {(e.kind, e.pass_id) for e in s.scalars(select(Event))}
        # the still-valid season pass's redemption and admit; the venue's newest redemption (the
        # season pass's: the last row) is also the mark
        assert left == {("decision", season), ("redeemed", season)}
        _purge(s, T0 + 90 * DAY + retention.VALIDITY_GRACE_S + 1)
        assert [(e.kind, e.pass_id) for e in s.scalars(select(Event))] == [("redeemed", None)]


@claim("hub.alerts")
def test_hub_alerts_lose_pass_ids_after_the_window_and_go_after_the_retention(db_url: str) -> None:
    with _hub(db_url) as s:
        venue, _ = _arena(s)
        s.add(Alert(venue_id=venue.id, kind="double_redemption", pass_id="a1" * 16, event_id="e",
                    entries=1, redemptions=[], apart_s=1.0, created_at=T0))
        s.commit()
        _purge(s, T0 + venue.window_hours * 3600 - 1)
        assert s.scalars(select(Alert.pass_id)).one() == "a1" * 16
        _purge(s, T0 + venue.window_hours * 3600 + 1)
        assert s.scalars(select(Alert.pass_id)).one() is None
        _purge(s, T0 + venue.retention_days * DAY + 1)
        assert s.scalars(select(Alert)).all() == []


@claim("hub.passes")
def test_hub_pass_records_go_a_retention_after_their_validity(db_url: str) -> None:
    with _hub(db_url) as s:
        venue, _ = _arena(s)
        s.add(IssuedPass(pass_id="a1" * 16, venue_id=venue.id, kid="k", zones=[], valid_from=T0,
                         valid_until=T0 + DAY, issued_at=T0))
        s.commit()
        assert _purge(s, T0 + DAY + venue.retention_days * DAY - 1).passes_deleted == 0
        assert _purge(s, T0 + DAY + venue.retention_days * DAY + 1).passes_deleted == 1


@claim("hub.claims")
def test_hub_claims_hold_a_code_hash_and_a_key_thumbprint_and_go_with_the_pass_record(db_url: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from passgate_hub import claims
    from passgate_hub.models import PassClaim

    with _hub(db_url) as s:
        venue, _ = _arena(s)
        ops.add_key(s, venue, generate=True)
        _, ((pass_id, code),) = claims.issue_bound(s, venue, count=1, valid_from=T0, valid_until=T0 + DAY,
                                                   now=T0)
        numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        x, y = (base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode().rstrip("=")
                for n in (numbers.x, numbers.y))
        jwk = {"kty": "EC", "crv": "P-256", "x": x, "y": y}
        claims.claim(s, code, jwk, now=T0 + 1)
        s.commit()
        stored = " ".join(str(row) for row in s.execute(text("SELECT * FROM pass_claims")))
        assert pass_id in stored and code not in stored and jwk["x"] not in stored and jwk["y"] not in stored
        gone = T0 + DAY + venue.retention_days * DAY
        assert _purge(s, gone - 1).passes_deleted == 0
        assert s.scalar(select(func.count()).select_from(PassClaim)) == 1
        assert _purge(s, gone + 1).passes_deleted == 1
        assert s.scalar(select(func.count()).select_from(PassClaim)) == 0


@claim("hub.counts")
def test_hub_counts_outlive_the_events_the_minutes_go_and_neither_holds_a_pass_id(db_url: str) -> None:
    assert not {"pass_id"} & (promised("hub.")["passage_totals"] | promised("hub.")["entry_minutes"])
    with _hub(db_url) as s:
        venue, gate = _arena(s)
        ingest.ingest(s, gate, _admitted("a1" * 16, T0) + _admitted("a2" * 16, T0), now=T0)
        s.commit()
        before = ops.zone_counts(s, venue)
        minute = ops.entries_per_minute(s, venue, T0 // 60 * 60, T0 // 60 * 60 + 60)
        assert minute == [2]
        _purge(s, T0 + venue.retention_days * DAY - 60)
        assert s.scalar(select(func.count()).select_from(EntryMinute)) == 1
        assert _purge(s, T0 + venue.retention_days * DAY + 60).minutes_deleted == 1
        assert s.scalar(select(func.count()).select_from(EntryMinute)) == 0
        assert ops.zone_counts(s, venue) == before == [{"zone": "floor", "entries": 2, "exits": 0,
                                                        "inside": 2}]


@claim("hub.deny")
def test_hub_deny_lists_are_kept(db_url: str) -> None:
    with _hub(db_url) as s:
        venue, _ = _arena(s)
        ops.deny(s, venue, "revoked", ["a1" * 16], external=True)
        s.commit()
        _purge(s, T0 + 3660 * DAY)
        assert s.scalar(text("SELECT pass_id FROM deny_entries")) == "a1" * 16


@claim("hub.setup")
def test_hub_setup_tables_hold_no_pass_id() -> None:
    for table in claims()["hub.setup"][0]:
        assert "pass_id" not in promised("hub.")[table]


@claim("hub.operators")
def test_operators_hold_no_password_nor_second_factor_and_sessions_end(db_url: str) -> None:
    from urllib.parse import parse_qs, urlsplit

    import pyotp

    from passgate_hub import console, operators
    from passgate_hub.models import ConsoleSession, Operator
    from passgate_hub.scope import EVERYTHING, Role

    password = "a password of the test"
    with _hub(db_url) as s:
        _arena(s)
        made = operators.create(s, "alice", role=Role.VIEWER, venues=["arena"], password=password,
                                by=EVERYTHING)
        s.commit()
        secret = parse_qs(urlsplit(made.totp_uri).query)["secret"][0]
        person = operators.sign_in(s, "alice", password, pyotp.TOTP(secret).now())
        stored = " ".join(str(row) for row in s.execute(text("SELECT * FROM operators")))
        assert password not in stored and secret not in stored and secret.encode().hex() not in stored
        now = time.time()
        for started in (now - console.MAX_S - 1, now - console.IDLE_S - 1, now):  # expired, idle, live
            s.add(ConsoleSession(token_hash=f"{started:064.0f}"[-64:],
                                 operator_id=person.id, created_at=started,
                                 last_seen_at=started, expires_at=started + console.MAX_S))
        s.commit()
        removed, _ = retention.purge(s, now=now)
        assert removed[retention.HUB_WIDE].sessions_deleted == 2
        assert s.execute(text("SELECT count(*) FROM console_sessions")).scalar() == 1
        operators.delete(s, "alice", by=EVERYTHING)
        s.commit()
        assert s.scalar(select(Operator.id)) is None
        assert s.execute(text("SELECT count(*) FROM console_sessions")).scalar() == 0
        assert s.execute(text("SELECT count(*) FROM principals")).scalar() == 0


@claim("hub.audit")
def test_the_audit_log_holds_no_pass_id(db_url: str) -> None:
    with _hub(db_url) as s:
        venue, _ = _arena(s)
        revoked = "7a" * 16
        ops.deny(s, venue, "revoked", [revoked], external=True, reason="lost")
        s.commit()
        entries = [str(row) for row in s.execute(text("SELECT * FROM audit_log"))]
        assert any("revoked.add" in e for e in entries)
        assert not any(revoked in e for e in entries)
        # older than written: gone after a purge; the day before, kept
        written = s.execute(text("SELECT max(at) FROM audit_log")).scalar()
        kept_until = written + retention.AUDIT_RETENTION_DAYS * DAY
        s.commit()
        retention.purge(s, now=kept_until - 1)
        held = text("SELECT count(*) FROM audit_log WHERE at = :at")
        assert s.execute(held, {"at": written}).scalar() == 1
        retention.purge(s, now=kept_until + 1)
        assert s.execute(held, {"at": written}).scalar() == 0
    assert "pass_id" not in promised("hub.")["audit_log"]


# -- the gate's stores ---------------------------------------------------------------------------


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@claim("gate.events")
def test_gate_events_go_after_the_retention_once_acknowledged(tmp_path: Path) -> None:
    clock = Clock(T0)
    with Journal(tmp_path / "j.db", "g1", clock=clock) as journal:
        acked, unsent = journal.record(wire.EventKind.PASSAGE), journal.record(wire.EventKind.PASSAGE)
        journal.mark_sent([acked])
        clock.t += 30 * DAY + 1
        journal.purge(30)
        assert [e["event_id"] for e in journal.events()] == [unsent]  # waits for the hub
        journal.purge(30, keep_unsent=False)  # without a hub: by age alone
        assert journal.events() == []


@claim("gate.redemptions")
def test_gate_redemptions_go_by_validity_or_by_age(tmp_path: Path) -> None:
    """Remote redemptions too: of a pass whose validity the gate knows, until the retention after
    it (a single-use pass stays used while valid); of one it does not, the retention after the
    redemption."""
    clock = Clock(T0)
    with Journal(tmp_path / "j.db", "g1", clock=clock) as journal:
        season, other, own = bytes.fromhex("5e" * 16), bytes.fromhex("0e" * 16), bytes.fromhex("a1" * 16)
        journal.add_remote_redemption("r1", season.hex(), "g2", "entry", T0, valid_until=T0 + 90 * DAY)
        journal.add_remote_redemption("r2", other.hex(), "g2", "entry", T0, valid_until=None)
        with contextlib.closing(sqlite3.connect(tmp_path / "j.db", isolation_level=None)) as writer:
            writer.execute("INSERT INTO redemptions VALUES ('r3', ?, 'g1', 'entry', ?, 'committed', ?)",
                           (own.hex(), T0, T0 + DAY))
        journal.catch_up()  # a row another connection wrote, as the gate's health check takes it in
        clock.t = T0 + 30 * DAY - 1
        journal.purge(30)
        assert [journal.usage(p).entries_used for p in (season, other, own)] == [1, 1, 1]
        clock.t = T0 + 31 * DAY + 1
        journal.purge(30)
        assert [journal.usage(p).entries_used for p in (season, other, own)] == [1, 0, 0]
        clock.t = T0 + 120 * DAY + 1
        journal.purge(30)
        assert journal.usage(season).entries_used == 0
        assert journal.db.execute("SELECT count(*) FROM redemptions").fetchone()[0] == 0


@claim("gate.meta")
def test_gate_meta_holds_no_pass_id() -> None:
    assert promised("gate.")["meta"] == {"key", "value"}


@claim("gate.files")
def test_gate_files_are_what_the_section_names(tmp_path: Path) -> None:
    from passgated.layout import GateLayout, sync_state_path

    row = next(line for line in SECTION.splitlines() if line.startswith("| `gate.files`"))
    assert sync_state_path(tmp_path / "journal.db").name.endswith(".hub.json") and "(`*.hub.json`)" in row
    config = parse_config({"journal": {"path": str(tmp_path / "j.db")}})
    aside = GateLayout.from_config(config).journal_aside_dir
    assert f"(`{aside.name}/`)" in row


@claim("pretix.pull")
def test_a_pretix_pull_keeps_pass_ids_never_secrets_nor_seeds(tmp_path: Path) -> None:
    event_key = ed25519.Ed25519PrivateKey.generate()
    pem = event_key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    refunded = issue_sig1(event_key, seed="seed-refunded", item=1)
    held = issue_sig1(event_key, seed="seed-held", item=1)
    out, signing_key = tmp_path / "out", generate_private_key()
    with FakePretix.running(event=event_resource(EVENT, [pem]), checkinlists=[]) as fake:
        fake.revoke(refunded)
        fake.block(held)
        client = PretixClient(PretixSource(fake.url, ORGANIZER, EVENT), TOKEN)
        pull(client, out, signing_key, scope="acme")

        def ids_kept() -> str:
            return (out / STATE_FILE).read_text()

        everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
        for secret, seed in ((refunded, "seed-refunded"), (held, "seed-held")):
            assert secret.encode() not in everything and seed.encode() not in everything
            assert seed_pass_id(seed).hex() in ids_kept()
        json.loads(ids_kept())  # one JSON document, as written
        fake.unblock(held)
        pull(client, out, signing_key, scope="acme")
        assert seed_pass_id("seed-held").hex() not in ids_kept()
        assert seed_pass_id("seed-refunded").hex() in ids_kept()
