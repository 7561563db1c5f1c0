"""The hub's retention on SQLite and PostgreSQL, with an injected clock: events and alerts past a
venue's retention go (their passages stay in the counts), pass ids past its window go, a
still-valid pass the hub issued keeps what the gates need to refuse it again, the venue's settings
through the CLI and the admin API, ``passgate-hub purge [--dry-run]``, and the running hub's
bounded purge rounds."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import func, select, text

from passgate import Reason, TrustStore, verify_pass
from passgate.wire import Direction
from passgate_hub import ops, retention
from passgate_hub.models import REDEMPTION_KINDS, EntryMinute, Event, IssuedPass, PassageTotal
from passgated.journal import Journal
from passgated.policy import Context, PolicyConfig, decide

from .server import HubServer, issue
from .test_api import TIMEOUT, event, gate_client, setup_venue
from .test_ingest_trust import admitted, post, pull, run_cli

DAY = 86400.0


def counts(hub: HubServer, admin) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    r = admin.get(f"{hub.url}/v1/admin/venues/arena/counts", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def events(hub: HubServer) -> list[Event]:
    with hub.session() as s:
        return list(s.scalars(select(Event).order_by(Event.seq)))


def purge(hub: HubServer, now: float, **options: object) -> dict[str, retention.Purged]:
    with hub.session() as s:
        removed, finished = retention.purge(s, now=now, **options)  # type: ignore[arg-type]
    assert finished
    return removed


def passages(tokens: dict[str, str], hub: HubServer, t: float) -> None:
    """Two in and one out on the floor (scanned and free), one forced in to vip, plus decisions."""
    post(hub, tokens["g1"], "g1", admitted("g1", "a1" * 16, t=t))
    post(hub, tokens["g2"], "g2", [
        *admitted("g2", "a2" * 16, t=t),
        event("arena-g2", "passage", direction="exit", detail="free exit", t=t + 2),
        event("arena-g2", "decision", pass_id="a3" * 16, decision="refuse", reason="expired", t=t + 3)])
    post(hub, tokens["g3"], "g3", [event("arena-g3", "forced_passage", detail="forced", t=t)])


def marks(hub: HubServer) -> set[int]:
    """The rows a purge leaves behind (``retention``'s text): the venue's newest redemption, and on
    SQLite the hub's newest event."""
    rows = events(hub)
    redemptions = [e for e in rows if e.kind in REDEMPTION_KINDS]
    out = {max(redemptions, key=lambda e: (e.pos, e.seq)).seq} if redemptions else set()
    if hub.engine.dialect.name == "sqlite" and rows:
        out.add(rows[-1].seq)
    return out


def only_marks_left(hub: HubServer, left: set[int]) -> None:
    rows = events(hub)
    assert {e.seq for e in rows} == left and all(e.pass_id is None for e in rows)


def test_events_past_retention_go_and_the_counts_stay(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    passages(tokens, hub, time.time())
    before = counts(hub, admin)
    assert before == [{"zone": "floor", "entries": 2, "exits": 1, "inside": 1},
                      {"zone": "vip", "entries": 1, "exits": 0, "inside": 1}]
    held, left = len(events(hub)), marks(hub)
    # a day short of the retention: nothing goes but the pass ids (past the 48-hour window)
    removed = purge(hub, time.time() + 29 * DAY)["arena"]
    assert (removed.events_deleted, removed.pass_ids_removed) == (0, 5)
    assert len(events(hub)) == held and all(e.pass_id is None for e in events(hub))
    dry = purge(hub, time.time() + 31 * DAY, dry_run=True)["arena"]
    assert dry.events_deleted == held - len(left) and dry.minutes_deleted >= 1
    assert len(events(hub)) == held  # a dry run removes nothing
    removed = purge(hub, time.time() + 31 * DAY)["arena"]
    assert removed == dry
    only_marks_left(hub, left)
    assert counts(hub, admin) == before
    with hub.session() as s:  # ingest counted every passage: the purge leaves the totals as they were
        assert s.scalar(select(func.sum(PassageTotal.passages))) == 4
        assert s.scalar(select(func.count()).select_from(EntryMinute)) == 0
    # new passages the same day add to the purged ones; a second purge counts them once
    passages(tokens, hub, time.time())
    after = [{"zone": "floor", "entries": 4, "exits": 2, "inside": 2},
             {"zone": "vip", "entries": 2, "exits": 0, "inside": 2}]
    assert counts(hub, admin) == after
    left = marks(hub)
    purge(hub, time.time() + 31 * DAY)
    purge(hub, time.time() + 31 * DAY)
    only_marks_left(hub, left)
    assert counts(hub, admin) == after
    r = admin.get(f"{hub.url}/v1/admin/venues/arena/events", timeout=TIMEOUT)
    assert r.status_code == 200 and {e["seq"] for e in r.json()} == left


def test_a_still_valid_issued_pass_keeps_what_the_gates_need(hub: HubServer, tmp_path) -> None:
    """A single-use pass valid for 60 days, redeemed at g1: past the window and the retention its
    redemption (and the admit behind it) keep the pass id and are still served, so a gate whose
    journal was lost fetches it again and refuses the pass; once it expired, they go."""
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    now = time.time()
    [season] = issue(hub, admin, valid_until=now + 60 * DAY)
    pid = season["pass_id"]
    external = "e1" * 16  # another issuer's pass: the hub knows no validity
    post(hub, tokens["g1"], "g1", [
        *admitted("g1", external, t=now),
        event("arena-g1", "decision", pass_id=pid, decision="refuse", reason="not_yet_valid", t=now)])
    post(hub, tokens["g1"], "g1", admitted("g1", pid, t=now + 5))  # the newest: a mark (see ``marks``)
    removed = purge(hub, now + 40 * DAY)["arena"]
    assert (removed.pass_ids_removed, removed.events_deleted, removed.passes_deleted) == (3, 3, 0)
    kept = events(hub)
    assert [(e.kind, e.pass_id) for e in kept] == [("decision", pid), ("redeemed", pid)]
    served = pull(hub, tokens["g2"], "g2", include_own="true")["redemptions"]
    assert [(r["pass_id"], r["valid_until"]) for r in served] == [(pid, pytest.approx(now + 60 * DAY))]

    # a gate starting from an empty journal takes it, and refuses the pass while it is valid
    journal = Journal(tmp_path / "journal.db", "arena-g2", clock=lambda: now + 40 * DAY)
    for r in served:
        journal.add_remote_redemption(r["redemption_id"], r["pass_id"], r["gate_id"], r["direction"],
                                      r["t"], r["valid_until"])
    kid = next(k["kid"] for k in admin.get(f"{hub.url}/v1/admin/venues/arena/keys", timeout=TIMEOUT).json()
               if k["purpose"] == "passes")
    pem = admin.get(f"{hub.url}/v1/admin/venues/arena/keys/{kid}.pem", timeout=TIMEOUT).text
    trust = TrustStore([load_pem_public_key(pem.encode())])  # type: ignore[list-item]
    verified = verify_pass(season["text"], trust, now=now + 40 * DAY)
    decision = decide(verified, Context(now=now + 40 * DAY, direction=Direction.ENTRY, revoked=set(),
                                        blocked=set(), usage=journal), PolicyConfig(zones=("floor",)))
    assert not decision.admit and decision.reason is Reason.USED_UP
    journal.close()

    # expired (beyond the gates' largest skew): its ids and rows go (the retention is long past;
    # the newest redemption stays as a mark, without its pass id); the hub's record of the pass
    # goes the retention after its validity
    assert purge(hub, now + 60 * DAY)["arena"].events_deleted == 0
    removed = purge(hub, now + 60 * DAY + retention.VALIDITY_GRACE_S + 1)["arena"]
    assert (removed.pass_ids_removed, removed.events_deleted, removed.passes_deleted) == (2, 1, 0)
    assert [(e.kind, e.pass_id) for e in events(hub)] == [("redeemed", None)]
    assert counts(hub, admin)[0]["entries"] == 2
    assert purge(hub, now + 91 * DAY)["arena"].passes_deleted == 1
    with hub.session() as s:
        assert s.scalar(select(IssuedPass).where(IssuedPass.pass_id == pid)) is None


def test_alerts_lose_the_pass_id_after_the_window_and_go_after_the_retention(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    [once] = issue(hub, admin)
    now = time.time()
    post(hub, tokens["g1"], "g1", admitted("g1", once["pass_id"], t=now))
    post(hub, tokens["g2"], "g2", admitted("g2", once["pass_id"], t=now + 10))
    [alert] = admin.get(f"{hub.url}/v1/admin/venues/arena/alerts", timeout=TIMEOUT).json()
    assert alert["pass_id"] == once["pass_id"]
    assert purge(hub, now + 47 * 3600)["arena"].alert_pass_ids_removed == 0
    assert purge(hub, now + 49 * 3600)["arena"].alert_pass_ids_removed == 1
    [alert] = admin.get(f"{hub.url}/v1/admin/venues/arena/alerts", timeout=TIMEOUT).json()
    assert alert["pass_id"] is None and alert["gates"] == ["arena-g1", "arena-g2"]
    assert purge(hub, now + 31 * DAY)["arena"].alerts_deleted == 1
    assert admin.get(f"{hub.url}/v1/admin/venues/arena/alerts", timeout=TIMEOUT).json() == []


def test_venue_settings_through_the_api_bound_the_purge(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    venue = f"{hub.url}/v1/admin/venues/arena"
    [shown] = admin.get(f"{hub.url}/v1/admin/venues", timeout=TIMEOUT).json()
    assert (shown["retention_days"], shown["window_hours"]) == (retention.DEFAULT_RETENTION_DAYS,
                                                                retention.DEFAULT_WINDOW_HOURS)
    for bad in ({"retention_days": 0}, {"retention_days": 3661}, {"window_hours": 0},
                {"window_hours": 2**63}, {"retention_days": "7"}, {"retention_days": 1.5},
                {"retention_days": True}, {"keep": 1}):
        r = admin.patch(venue, json=bad, timeout=TIMEOUT)
        assert r.status_code == 422 and r.json()["detail"], bad
    assert admin.patch(f"{hub.url}/v1/admin/venues/nowhere", json={}, timeout=TIMEOUT).status_code == 404
    r = admin.patch(venue, json={"retention_days": 2, "window_hours": 1}, timeout=TIMEOUT)
    assert r.status_code == 200 and (r.json()["retention_days"], r.json()["window_hours"]) == (2, 1)
    assert admin.patch(venue, json={"window_hours": 3}, timeout=TIMEOUT).json()["retention_days"] == 2
    now = time.time()
    passages(tokens, hub, now)
    assert purge(hub, now + 2 * 3600)["arena"].pass_ids_removed == 0
    assert purge(hub, now + 4 * 3600)["arena"].pass_ids_removed == 5
    assert purge(hub, now + 1.5 * DAY)["arena"].events_deleted == 0
    assert purge(hub, now + 2.5 * DAY)["arena"].events_deleted == 7 - len(marks(hub))
    assert counts(hub, admin)[0] == {"zone": "floor", "entries": 2, "exits": 1, "inside": 1}


def test_purge_command_and_venue_set(hub: HubServer, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    passages(tokens, hub, time.time())
    with hub.session() as s:  # received 31 days ago, by the hub's clock
        s.execute(text("UPDATE events SET received_at = received_at - :age"), {"age": 31 * DAY})
        s.commit()
    left = marks(hub)
    dry = run_cli(db_url, capsys, "purge", "--dry-run")
    assert dry["dry_run"] is True and dry["venues"]["arena"]["events_deleted"] == 7 - len(left)
    assert len(events(hub)) == 7
    shown = run_cli(db_url, capsys, "purge")
    assert shown == {**dry, "dry_run": False}
    assert {**shown["venues"]["arena"], "events_deleted": 0} == {
        "pass_ids_removed": 5, "events_deleted": 0, "minutes_deleted": 0, "alert_pass_ids_removed": 0,
        "alerts_deleted": 0, "passes_deleted": 0, "audit_deleted": 0, "sessions_deleted": 0}
    assert shown["hub_wide"] == {"audit_deleted": 0, "sessions_deleted": 0}
    only_marks_left(hub, left)
    assert counts(hub, admin)[1]["entries"] == 1
    changed = run_cli(db_url, capsys, "venue", "set", "arena", "--retention-days", "7")
    assert (changed["retention_days"], changed["window_hours"]) == (7, 48)
    from passgate_hub import cli

    for argv, why in ((["venue", "set", "arena", "--window-hours", "0"],
                       "window_hours is from 1 to 8784, got 0"),
                      (["purge", "--venue", "nowhere"], "no venue 'nowhere'")):
        assert cli.main(["--database", db_url, *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err, err


def test_the_audit_log_is_deleted_after_its_retention(hub: HubServer, db_url: str,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Operators are people too: who changed what goes after ``AUDIT_RETENTION_DAYS``, a venue's
    entries and the hub-wide ones, in chunks; a younger entry stays."""
    admin = hub.admin()
    setup_venue(hub, admin)
    run_cli(db_url, capsys, "venue", "create", "stadium")
    with hub.session() as s:
        venues = dict(s.execute(text("SELECT name, id FROM venues")).all())
        before = s.execute(text("SELECT count(*) FROM audit_log")).scalar()
        old = time.time() - (retention.AUDIT_RETENTION_DAYS + 1) * DAY
        for n, venue_id in enumerate([venues["arena"]] * 5 + [venues["stadium"]] * 2 + [None] * 3):
            s.execute(text("INSERT INTO audit_log (at, actor, source, action, venue_id, target, detail) "
                           "VALUES (:at, 'apikey:old', '192.0.2.1', 'gate.create', :venue, :n, '{}')"),
                      {"at": old, "venue": venue_id, "n": f"g{n}"})
        s.commit()
    only = run_cli(db_url, capsys, "purge", "--venue", "stadium")
    assert only["venues"]["stadium"]["audit_deleted"] == 2 and "hub_wide" not in only
    monkeypatch.setattr(retention, "CHUNK", 2)  # chunks: 2 + 2 + 1 for the arena
    shown = run_cli(db_url, capsys, "purge")
    assert shown["venues"]["arena"]["audit_deleted"] == 5
    assert shown["hub_wide"] == {"audit_deleted": 3, "sessions_deleted": 0}
    with hub.session() as s:
        kept = s.execute(text("SELECT actor, action FROM audit_log ORDER BY id")).all()
    assert "apikey:old" not in {actor for actor, _ in kept}
    assert len(kept) == before + 2  # the younger entries, and the two purges' own
    assert [action for _, action in kept[-2:]] == ["retention.purge", "retention.purge"]


def test_the_running_hub_purges_in_bounded_rounds(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "CHUNK", 2)
    monkeypatch.setattr(retention, "CHUNKS_A_ROUND", 3)
    hub = HubServer(db_url, purge_every_s=0.01).start()
    try:
        purger = hub.app.state.purger
        admin = hub.admin()
        tokens = setup_venue(hub, admin)
        passages(tokens, hub, time.time())
        before = counts(hub, admin)
        rounds, left = purger.rounds, marks(hub)
        purger.clock = lambda: time.time() + 31 * DAY
        with purger.done:
            assert purger.done.wait_for(lambda: {e.seq for e in events(hub)} == left, timeout=20)
        only_marks_left(hub, left)
        # 5 pass ids and 7 events in chunks of 2 are 6 chunks with rows at least, at most 3 a round, so
        # 2 rounds at least (one unbounded round would do it all). How many empty steps a round visits
        # depends on where the rounds before the clock moved left off (retention.Resume): not counted.
        assert purger.rounds - rounds >= 2
        assert counts(hub, admin) == before
    finally:
        hub.close()


def test_a_round_is_bounded_and_a_later_one_goes_on(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "CHUNK", 2)
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    passages(tokens, hub, time.time())
    with hub.session() as s:
        removed, finished = retention.purge(s, now=time.time() + 31 * DAY, max_chunks=2)
    assert not finished and removed["arena"].pass_ids_removed == 4 and len(events(hub)) == 7
    left = marks(hub)
    purge(hub, time.time() + 31 * DAY)
    only_marks_left(hub, left)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has one writer
def test_two_purgers_at_once_count_nothing_twice(hub: HubServer) -> None:
    """Another purge holding the purge lock makes this one stop; purgers racing over the same rows
    count only the rows each deleted."""
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    passages(tokens, hub, time.time())
    left = marks(hub)
    with hub.session() as holder:
        assert holder.scalar(text("SELECT pg_try_advisory_xact_lock(1885824116, 1)"))
        with hub.session() as s:
            removed, finished = retention.purge(s, now=time.time() + 31 * DAY)
        assert not finished and not removed["arena"]
    barrier = threading.Barrier(4)

    def race() -> retention.Purged:
        with hub.session() as s:
            barrier.wait()
            return retention.purge(s, now=time.time() + 31 * DAY)[0]["arena"]

    threads: list[retention.Purged] = []
    workers = [threading.Thread(target=lambda: threads.append(race())) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert sum(p.events_deleted for p in threads) == 7 - len(left)
    only_marks_left(hub, left)
    assert counts(hub, admin)[0] == {"zone": "floor", "entries": 2, "exits": 1,
                                                           "inside": 1}


def test_a_purge_leaves_ingest_and_the_redemption_cursor_working(hub: HubServer) -> None:
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    now = time.time()
    post(hub, tokens["g1"], "g1", admitted("g1", "a1" * 16, t=now))
    cursor = pull(hub, tokens["g2"], "g2")["cursor"]
    purge(hub, now + 31 * DAY)
    fresh = uuid.uuid4().hex
    post(hub, tokens["g1"], "g1", admitted("g1", fresh))
    page = pull(hub, tokens["g2"], "g2", after=cursor)
    assert [r["pass_id"] for r in page["redemptions"]] == [fresh]
    assert gate_client(tokens["g1"]).get(f"{hub.url}/v1/gates/arena-g1/bundle",
                                         timeout=TIMEOUT).status_code == 200


def test_the_migration_keeps_existing_venues_and_events(db_url: str) -> None:
    """A database at the revision before retention, holding a venue and an event, migrates: the
    venue gets the documented defaults and the event stays (and counts)."""
    from passgate_hub import db

    engine = db.make_engine(db_url)
    db.migrate(engine, "0002")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO venues (id, name, keys_rev, created_at) "
                                "VALUES (1, 'arena', 0, 1)"))
        connection.execute(text(
            "INSERT INTO events (event_id, venue_id, gate_id, t, kind, direction, pass_id, detail, "
            "received_at, hub_t, pos) VALUES ('e1', 1, 'arena-g1', 1, 'redeemed', 'entry', :p, 'r', "
            "1, 1, 1)"), {"p": "a1" * 16})
    db.migrate(engine)
    with db.session_factory(engine)() as s:
        assert s.execute(text("SELECT retention_days, window_hours FROM venues")).one() == (30, 48)
        assert s.scalars(select(Event.pass_id)).all() == ["a1" * 16]
        removed = retention.purge(s, now=40 * DAY)[0]["arena"]
        assert removed.pass_ids_removed == 1  # the one row is the venue's newest redemption: a mark
    engine.dispose()


def test_a_round_against_a_database_that_is_gone_is_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from passgate_hub import db

    sessions = db.session_factory(db.make_engine(f"sqlite:///{tmp_path / 'gone' / 'hub.db'}"))
    purger = retention.Purger(sessions)
    with caplog.at_level(logging.ERROR, logger="passgate_hub.retention"):
        assert purger.round() is True  # the next round waits the interval, then tries again
    assert purger.rounds == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and all(r.exc_info is None for r in caplog.records)
    assert lines[0].startswith("retention purge failed: database sqlite:///")
    assert "unable to open database file" in lines[0]


def test_a_hub_with_more_venues_than_a_round_covers_purges_them_all_in_turn(
        hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round goes on where the last stopped: venues that sort first (here eight with nothing
    to purge, whose empty steps alone outnumber a round's bound) do not hold back the others, and
    once every venue had its turn the purger waits for its interval (no rounds back to back)."""
    monkeypatch.setattr(retention, "CHUNKS_A_ROUND", 5)
    admin = hub.admin()
    tokens = setup_venue(hub, admin)
    passages(tokens, hub, time.time())
    with hub.session() as s:
        for n in range(8):
            ops.create_venue(s, f"a{n}")  # before "arena": each takes 7 empty chunks
        s.commit()
    left = marks(hub)
    purger = retention.Purger(hub.app.state.sessions, clock=lambda: time.time() + 31 * DAY)
    for _ in range(30):  # 9 venues × 7 steps + the hub-wide rows, 5 chunks a round
        if purger.round():
            break
    else:
        pytest.fail("the purge never finished: the venues after the first few never had their turn")
    only_marks_left(hub, left)
    assert purger.resume.venue is None
