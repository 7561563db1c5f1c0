"""The journal on a real SQLite file: durability settings, crash recovery, usage, outbox, purge."""

import os
import pickle
import resource
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import passgated.journal as journal_module
from passgate import Reason, TrustStore, generate_private_key, issue_pass, verify_signature
from passgated.journal import (
    Journal,
    JournalDamaged,
    JournalError,
    open_journal,
    purge,
    quick_check,
    salvage,
    set_aside,
    unsent_count,
)
from passgated.policy import Decision, Direction
from tests.fds import open_files

KEY = generate_private_key()
TRUST = TrustStore()
TRUST.add(KEY.public_key())


def admit(direction=Direction.ENTRY, valid_until=2**31, entries=None):
    p = verify_signature(issue_pass(KEY, valid_from=0, valid_until=valid_until, entries=entries), TRUST)
    return Decision(True, Reason.ADMIT, "Welcome", direction, p)


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_wal_and_full_sync(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "g1") as j:
        assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert j.integrity_ok()


def test_commit_counts_release_gives_back(tmp_path: Path) -> None:
    clock = FakeClock()
    j = Journal(tmp_path / "j.db", "g1", clock=clock)
    d = admit()
    rid = j.record_decision(d, 1.5, reserve=True)
    assert j.usage(d.pass_id).entries_used == 1  # a reservation counts while in flight
    j.release(rid)
    assert j.usage(d.pass_id).entries_used == 0
    clock.t += 10
    rid = j.record_decision(d, 1.0, reserve=True)
    j.commit(rid)
    j.commit(rid)  # idempotent
    usage = j.usage(d.pass_id)
    assert (usage.entries_used, usage.inside, usage.last_entry_t) == (1, True, clock.t)
    exit_rid = j.record_decision(Decision(True, Reason.ADMIT, "Bye", Direction.EXIT, d.pass_), 1.0,
                                 reserve=True)
    j.commit(exit_rid)
    usage = j.usage(d.pass_id)
    assert (usage.entries_used, usage.inside, usage.exited) == (1, False, True)
    kinds = [e["kind"] for e in j.events()]
    assert kinds.count("decision") == 3 and kinds.count("redeemed") == 2 and "released" in kinds


def test_refusals_are_journalled_without_redemption(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    d = Decision(False, Reason.EXPIRED, "Expired 18:00", Direction.ENTRY, admit().pass_)
    assert j.record_decision(d, 0.4) is None
    (event,) = j.events("decision")
    assert (event["decision"], event["reason"], event["detail"]) == ("refuse", "expired", "Expired 18:00")
    assert j.usage(d.pass_id).entries_used == 0


def test_reservation_left_by_a_crash_counts_as_used(tmp_path: Path) -> None:
    """A child process reserves and is killed before commit or release: the entry stays used."""
    d = admit()
    script = (
        "import sys, os, pickle\n"
        "from passgated.journal import Journal\n"
        "d = pickle.loads(sys.stdin.buffer.read())\n"
        f"j = Journal({str(tmp_path / 'j.db')!r}, 'g1')\n"
        "j.record_decision(d, 1.0, reserve=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(d), timeout=60)
    assert result.returncode == -9
    j = Journal(tmp_path / "j.db", "g1")
    assert j.recovered == 1
    assert j.usage(d.pass_id).entries_used == 1
    assert [e["kind"] for e in j.events()][-1] == "reservation_assumed"
    assert Journal(tmp_path / "j.db", "g1").recovered == 0  # only once


def test_second_connection_never_recovers(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    d = admit()
    rid = j.record_decision(d, 1.0, reserve=True)
    reader = Journal(tmp_path / "j.db", "g1", recover=False)
    assert reader.recovered == 0
    j.commit(rid)
    assert reader.usage(d.pass_id).entries_used == 1


def test_outbox(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    for _ in range(5):
        j.record("passage", direction="entry")
    batch = j.unsent(3)
    assert len(batch) == 3 and j.backlog() == 5
    j.mark_sent(e["event_id"] for e in batch)
    unsent = [e["event_id"] for e in j.unsent(500)]
    assert j.backlog() == 2 and unsent == [e["event_id"] for e in j.events()[3:]]


def test_remote_redemptions_are_idempotent(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g2")
    pid = admit().pass_id
    assert j.add_remote_redemption("r1", pid.hex(), "g1", "entry", 1.0)
    assert not j.add_remote_redemption("r1", pid.hex(), "g1", "entry", 1.0)
    assert j.usage(pid).entries_used == 1


def test_purge_keeps_unsent_and_live_redemptions(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    j = Journal(tmp_path / "j.db", "g1", clock=clock)
    old_sent = j.record("state")
    j.record("state")  # old, unsent
    j.mark_sent([old_sent])
    expired = admit(valid_until=1_000_100)
    live = admit()
    j.commit(j.record_decision(expired, 1, reserve=True))
    j.commit(j.record_decision(live, 1, reserve=True))
    clock.t += 40 * 86400
    j.record("state")
    deleted = j.purge(30)
    assert deleted == 1
    assert old_sent not in [e["event_id"] for e in j.events()]
    assert j.usage(expired.pass_id).entries_used == 0 and j.usage(live.pass_id).entries_used == 1
    assert j.purge(30, keep_unsent=False) > 0 and j.backlog() == 1


def test_journal_opens_after_a_torn_wal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path, "g1")
    d = admit()
    j.commit(j.record_decision(d, 1, reserve=True))
    # Simulate a crash mid-append: garbage at the end of the WAL (a torn last frame).
    with open(f"{path}-wal", "ab") as wal:
        wal.write(b"\x00garbage" * 100)
    reopened = Journal(path, "g1")
    assert reopened.integrity_ok()
    assert reopened.usage(d.pass_id).entries_used == 1



def test_background_checkpoint_keeps_the_wal_bounded(tmp_path: Path) -> None:
    """The loop's connection never checkpoints; the upkeep worker must, or the WAL would grow by
    one batch per round (20x here)."""
    from passgated.upkeep import JournalUpkeep

    path = tmp_path / "j.db"
    j = Journal(path, "g1")
    assert j.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    upkeep = JournalUpkeep(j, retention_days=30, keep_unsent=False, damaged_marker=tmp_path / "damaged")
    wal, sizes = Path(f"{path}-wal"), []
    for _ in range(20):
        for _ in range(100):
            j.record("state", detail="x" * 200)
        upkeep.step()  # the worker's turn
        sizes.append(wal.stat().st_size)
    upkeep.close()
    j.close()
    assert sizes[-1] < 4 * sizes[0]
    assert len(Journal(path, "g1").events()) == 2000
    assert not (tmp_path / "damaged").exists()  # its check found nothing wrong


def test_purge_runs_in_the_background_in_chunks(tmp_path: Path, monkeypatch) -> None:
    """A gate that runs for months still honours its retention, without one long delete: the
    upkeep purges right after start, then every six hours, a few chunks a step."""
    import passgated.journal as journal_module
    import passgated.upkeep as upkeep_module
    from passgated.upkeep import PURGE_EVERY_S, JournalUpkeep

    monkeypatch.setattr(journal_module, "PURGE_CHUNK", 100)
    monkeypatch.setattr(journal_module, "PURGE_PAUSE_S", 0.0)
    monkeypatch.setattr(upkeep_module, "CHUNKS_A_STEP", 2)
    clock, ticks = FakeClock(1_000_000.0), FakeClock(0.0)
    j = Journal(tmp_path / "j.db", "g1", clock=clock)
    upkeep = JournalUpkeep(j, retention_days=30, keep_unsent=False, damaged_marker=tmp_path / "damaged",
                           clock=clock, monotonic=ticks)
    for _ in range(450):
        j.record("state")
    clock.t += 31 * 86400
    fresh = j.record("state")
    waits = [upkeep.step() for _ in range(3)]
    assert waits == [0.0, 0.0, 2.0]  # two chunks a step, again at once until done
    assert [e["event_id"] for e in j.events()] == [fresh]
    for _ in range(450):
        j.record("state")
    clock.t += 31 * 86400
    ticks.t += PURGE_EVERY_S - 1
    upkeep.step()
    assert len(j.events()) == 451  # not due yet
    ticks.t += 1
    while upkeep.step() == 0.0:
        pass
    assert len(j.events()) == 0
    upkeep.close()
    j.close()


def test_purge_deletes_in_short_transactions(tmp_path: Path, monkeypatch) -> None:
    """Each purge transaction deletes at most PURGE_CHUNK rows, so a big purge never holds the
    write lock long enough to stall a scan."""
    import passgated.journal as journal_module

    monkeypatch.setattr(journal_module, "PURGE_CHUNK", 100)
    clock = FakeClock(1_000_000.0)
    j = Journal(tmp_path / "j.db", "g1", clock=clock)
    for _ in range(450):
        j.record("state")
    clock.t += 31 * 86400
    statements: list[str] = []
    j.db.set_trace_callback(statements.append)
    assert j.purge(30, keep_unsent=False) == 450
    j.db.set_trace_callback(None)
    deletes = [s for s in statements if s.startswith("DELETE FROM events")]
    commits = [s for s in statements if s == "COMMIT"]
    assert len(deletes) == 5 and len(commits) >= 5 and all("LIMIT 100" in s for s in deletes)


# -- the contract, pinned down ----------------------------------------------------------------


class Ticks:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def rows(j: Journal, sql: str, *args: object) -> list[tuple]:
    return j.db.execute(sql, args).fetchall()


def corrupt(path: Path, name: str) -> None:
    with Journal(path, "g1", recover=False) as j:
        page = j.db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = j.db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page)
        f.write(os.urandom(page))


def test_constants_and_settings(tmp_path: Path) -> None:
    assert journal_module.DEFAULT_WRITE_TIMEOUT_S == 0.3
    assert (journal_module.PURGE_CHUNK, journal_module.PURGE_PAUSE_S) == (100, 0.01)
    assert journal_module.COUNTED == ("reserved", "committed", "assumed")
    assert journal_module.EVENT_FIELDS == ("event_id", "gate_id", "t", "kind", "direction", "pass_id",
                                           "decision", "reason", "latency_ms", "detail", "entries")
    with Journal(tmp_path / "j.db", "g1", write_timeout_s=0.25) as j:
        assert j.db.execute("PRAGMA busy_timeout").fetchone()[0] == 250  # the lock wait is the bound
        assert j.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert j.recovered == 0 and j.unavailable is None


def test_a_decision_and_its_reservation_are_written_as_they_are(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    j = Journal(tmp_path / "j.db", "gate-7", clock=clock)
    d = admit(valid_until=1_900_000_000, entries=2)
    rid = j.record_decision(d, 1.25, reserve=True)
    (event,) = j.events()
    assert {k: v for k, v in event.items() if k != "event_id"} == {
        "gate_id": "gate-7", "t": 1_800_000_000.0, "kind": "decision", "direction": "entry",
        "pass_id": d.pass_id.hex(), "decision": "admit", "reason": "admit", "latency_ms": 1.25,
        "detail": "Welcome", "entries": 2}  # the pass's own limit: the hub tells double uses by it
    assert len(event["event_id"]) == 32 and rid is not None and len(rid) == 32
    assert rows(j, "SELECT * FROM redemptions") == [
        (rid, d.pass_id.hex(), "gate-7", "entry", 1_800_000_000.0, "reserved", 1_900_000_000.0)]
    technical = Decision(False, Reason.UNREADABLE, "Not a valid pass", Direction.EXIT,
                         detail="Base45 triplet")
    assert j.record_decision(technical, 0.5, reserve=True) is None  # no pass id: nothing to reserve
    assert j.events()[-1]["detail"] == "Base45 triplet"  # the technical detail, when there is one
    assert j.events()[-1]["pass_id"] is None and len(rows(j, "SELECT * FROM redemptions")) == 1


def test_commit_and_release_are_recorded_once(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    j = Journal(tmp_path / "j.db", "g1", clock=clock)
    d = admit()
    rid = j.record_decision(d, 1.0, reserve=True)
    clock.t = 1005.0
    j.commit(rid)
    assert rows(j, "SELECT state, t FROM redemptions") == [("committed", 1005.0)]
    redeemed = j.events("redeemed")
    assert [(e["detail"], e["pass_id"], e["direction"], e["t"]) for e in redeemed] == [
        (rid, d.pass_id.hex(), "entry", 1005.0)]
    j.release(rid)  # too late: it counts
    assert rows(j, "SELECT state FROM redemptions") == [("committed",)] and not j.events("released")
    j.commit("no such reservation")
    assert len(j.events()) == 2
    other = j.record_decision(admit(), 1.0, reserve=True)
    j.release(other)
    assert [e["detail"] for e in j.events("released")] == [other]


def test_a_write_slower_than_the_bound_is_refused_and_gives_the_entry_back(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1", write_timeout_s=0.25, monotonic=Ticks(0.5))
    d = admit(entries=1)
    with pytest.raises(JournalError, match=r"^journal write took 0\.50 s \(limit 0\.25 s\)$"):
        j.record_decision(d, 1.0, reserve=True)
    assert rows(j, "SELECT state FROM redemptions") == [("released",)]  # the refused holder keeps it
    assert j.usage(d.pass_id).entries_used == 0
    # The journal says what the guard saw: a gate-fault refusal of this pass, with the cause.
    assert [(e["pass_id"], e["decision"], e["reason"], e["detail"], e["entries"])
            for e in j.events("decision")] == [
        (d.pass_id.hex(), "refuse", "gate_fault", "journal write took 0.50 s (limit 0.25 s)", None)]
    with pytest.raises(JournalError, match="journal write took"):
        j.record_decision(Decision(False, Reason.EXPIRED, "x", Direction.ENTRY), 1.0)
    assert [e["reason"] for e in j.events("decision")] == ["gate_fault", "gate_fault"]
    with pytest.raises(JournalError, match="journal write took"):
        j.probe()
    fast = Journal(tmp_path / "j.db", "g1", write_timeout_s=0.25, monotonic=Ticks(0.25))
    assert fast.record_decision(d, 1.0, reserve=True) is not None  # exactly at the bound: fine
    fast.probe()
    assert rows(fast, "SELECT key FROM meta") == [("probe",)]


def test_a_write_stalled_in_another_thread_refuses_the_scan_at_the_bound(tmp_path: Path) -> None:
    """The upkeep's purge chunk holds the loop's write lock while it writes (or waits for another
    process's lock): the loop waits for it only up to the bound, then the scan is refused. It used
    to wait for the lock without limit: 5 s more when another process held SQLite's lock."""
    j = Journal(tmp_path / "j.db", "g1", write_timeout_s=0.05)
    outcome: list[BaseException | str | None] = []

    def decide() -> None:
        try:
            outcome.append(j.record_decision(admit(), 1.0, reserve=True))
        except BaseException as exc:
            outcome.append(exc)

    with j.write_lock:  # the stalled write
        loop = threading.Thread(target=decide, daemon=True)
        loop.start()
        loop.join(timeout=30)  # a guard against a hang, not a timing: the bound is 0.05 s
        assert not loop.is_alive(), "the control loop waited for the stalled write without limit"
    assert len(outcome) == 1 and isinstance(outcome[0], JournalError)
    assert str(outcome[0]) == "journal locked: another write held it over 0.05 s"
    assert rows(j, "SELECT count(*) FROM redemptions") == [(0,)]  # nothing was reserved
    assert j.record_decision(admit(), 1.0, reserve=True) is not None  # the lock is free again


def test_every_connection_that_takes_the_write_lock_waits_for_sqlite_only_up_to_the_bound(
        tmp_path: Path) -> None:
    """SQLite's busy wait is per connection: one with Python's default 5 s, holding the loop's
    write lock meanwhile, made a scan wait 6 s for its refusal (a CI run under load)."""
    from passgated.upkeep import JournalUpkeep

    j = Journal(tmp_path / "j.db", "g1", write_timeout_s=0.3)
    upkeep = JournalUpkeep(j, retention_days=30, keep_unsent=False, damaged_marker=tmp_path / "damaged")
    try:
        assert rows(j, "PRAGMA busy_timeout") == [(300,)]
        assert upkeep._connection().execute("PRAGMA busy_timeout").fetchone() == (300,)
    finally:
        upkeep.close()


def test_sqlite_errors_become_causes_a_guard_can_read(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1", write_timeout_s=0.05)
    other = sqlite3.connect(tmp_path / "j.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(JournalError, match=r"^journal locked by another process$"):
        j.record("state")
    other.execute("ROLLBACK")
    other.close()
    j.record("state")  # and nothing was left half done
    j.db.execute("PRAGMA query_only = 1")
    with pytest.raises(JournalError, match=r"^journal is read-only$"):
        j.record("state")
    j.db.execute("PRAGMA query_only = 0")
    pages = j.db.execute("PRAGMA page_count").fetchone()[0]
    j.db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(JournalError, match=r"^disk full$") as full:
        for _ in range(1000):
            j.record("state", detail="x" * 4000)
    assert type(full.value) is JournalError  # not damage: the gate recovers by itself
    j.db.execute("PRAGMA max_page_count = 1000000")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(f"{j.path}-wal"), hard))
    try:
        with pytest.raises(JournalError, match=r"^disk I/O error \(SQLITE_IOERR"):
            for _ in range(100):
                j.record("state", detail="x" * 4000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    j.record("state")
    j.close()
    with pytest.raises(JournalError, match=r"^journal closed$"):
        j.record("state")


def test_damage_is_its_own_error(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "g1") as j:
        j.commit(j.record_decision(admit(), 1, reserve=True))
    corrupt(path, "redemptions_pass")
    reopened = Journal(path, "g1", recover=False)
    with pytest.raises(JournalDamaged, match=r"^journal damaged: database disk image is malformed"):
        reopened.check()
    with pytest.raises(JournalDamaged):
        reopened.usage(bytes(16))
    path.write_bytes(b"\xff" * 4096)
    with pytest.raises(JournalDamaged, match=r"^journal damaged: file is not a database$"):
        Journal(path, "g1")
    with pytest.raises(JournalDamaged):  # damage is never deferred: it must be set aside
        Journal(path, "g1", defer_errors=True)


@pytest.mark.parametrize("table", ["redemptions", "redemptions_reserved", "meta"])
def test_the_boot_check_reads_the_roots_of_what_the_policy_uses(tmp_path: Path, table: str) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "g1") as j:
        j.check()
    corrupt(path, table)
    with pytest.raises(JournalDamaged):
        Journal(path, "g1", recover=False).check()


def test_a_journal_that_cannot_be_opened_yet(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.mkdir()  # something in the way, as a full or read-only disk would be
    with pytest.raises(JournalError, match="unable to open"):
        Journal(path, "g1")
    j = Journal(path, "g1", defer_errors=True)
    assert j.unavailable is not None and "unable to open" in j.unavailable
    with pytest.raises(JournalError):
        j.record("state")
    path.rmdir()
    j.record("state")  # opened on first use once it can be
    assert j.unavailable is None and len(j.events()) == 1
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(JournalError, match=r"^cannot create the journal"):
        Journal(blocked / "sub" / "j.db", "g1")


def test_meta_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "g1") as j:
        assert j.history_missing() is None and j.emergency_latched() is False
        j.mark_history_missing("set aside")
        j.set_emergency_latched(True)
    with Journal(path, "g1") as j:
        assert j.history_missing() == "set aside" and j.emergency_latched() is True
        j.set_emergency_latched(False)
        j.history_restored("from the hub")
        assert j.history_missing() is None and j.emergency_latched() is False
        assert [e["detail"] for e in j.events("history_restored")] == ["from the hub"]
        assert rows(j, "SELECT * FROM meta") == []


def test_usage_counts_what_holds_and_orders_by_time(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    other = sqlite3.connect(tmp_path / "j.db", isolation_level=None)  # rows as another process writes them
    pid = admit().pass_id.hex()
    for rid, direction, t, state in [("a", "entry", 300.0, "committed"), ("b", "entry", 100.0, "assumed"),
                                     ("c", "exit", 200.0, "committed"), ("d", "entry", 400.0, "released"),
                                     ("e", "entry", 50.0, "reserved")]:
        other.execute("INSERT INTO redemptions VALUES (?, ?, 'g1', ?, ?, ?, NULL)",
                      (rid, pid, direction, t, state))
    j.catch_up()  # what the gate's health check does every second
    usage = j.usage(bytes.fromhex(pid))
    assert (usage.entries_used, usage.inside, usage.exited, usage.last_entry_t) == (3, True, True, 300.0)
    other.execute("INSERT INTO redemptions VALUES ('f', ?, 'g2', 'exit', 350.0, 'committed', NULL)", (pid,))
    j.catch_up()
    usage = j.usage(bytes.fromhex(pid))
    assert (usage.inside, usage.last_entry_t) == (False, 300.0)
    assert j.usage(bytes(16)) == type(usage)()
    other.close()


def test_remote_redemptions_are_stored_as_given(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g2")
    assert j.add_remote_redemption("r1", "ab" * 16, "g1", "exit", 12.5, 99.0) is True
    assert j.add_remote_redemption("r1", "ab" * 16, "g1", "exit", 12.5, 99.0) is False
    assert rows(j, "SELECT * FROM redemptions") == [("r1", "ab" * 16, "g1", "exit", 12.5, "committed", 99.0)]


def test_outbox_marks(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    ids = [j.record("passage", direction="entry", detail=str(n), pass_id="p") for n in range(4)]
    assert [e["detail"] for e in j.unsent(2)] == ["0", "1"] and len(j.unsent(500)) == 4
    j.mark_sent(ids[:1])
    j.mark_rejected(ids[1:2])
    assert j.backlog() == 2 and [e["event_id"] for e in j.unsent(500)] == ids[2:]
    assert rows(j, "SELECT sent FROM events ORDER BY seq") == [(1,), (2,), (0,), (0,)]
    assert unsent_count(tmp_path / "j.db") == 2
    assert [e["kind"] for e in j.events("passage")] == ["passage"] * 4 and j.events("state") == []
    assert j.events()[0]["pass_id"] == "p"
    with pytest.raises(JournalError):
        unsent_count(tmp_path / "missing.db")


def test_purge_by_age_keeps_what_is_young_unsent_or_live(tmp_path: Path) -> None:
    clock = FakeClock(100 * 86400.0)
    j = Journal(tmp_path / "j.db", "g1", clock=clock)
    j.db.executemany("INSERT INTO events(event_id, gate_id, t, kind, sent) VALUES (?, 'g1', ?, 'state', ?)",
                     [("old-sent", 60 * 86400.0, 1), ("old-unsent", 60 * 86400.0, 0),
                      ("edge", 70 * 86400.0, 1), ("young", 80 * 86400.0, 1)])
    j.db.executemany("INSERT INTO redemptions VALUES (?, 'p', 'g1', 'entry', ?, 'committed', ?)",
                     [("expired", 1.0, 60 * 86400.0), ("edge", 1.0, 70 * 86400.0),
                      ("live", 1.0, 90 * 86400.0),
                      ("unknown-old", 60 * 86400.0, None), ("unknown-edge", 70 * 86400.0, None),
                      ("unknown-young", 80 * 86400.0, None)])
    assert j.purge(30) == 1  # 30 days before now: day 70; the unsent one waits for the hub
    assert [e["event_id"] for e in j.events()] == ["old-unsent", "edge", "young"]
    # a pass of unknown validity (another issuer's, redeemed at another gate) goes by age
    assert [r[0] for r in rows(j, "SELECT redemption_id FROM redemptions ORDER BY rowid")] == [
        "edge", "live", "unknown-edge", "unknown-young"]
    assert j.purge(30, keep_unsent=False) == 1
    assert [e["event_id"] for e in j.events()] == ["edge", "young"]


def test_purge_in_chunks_with_a_pause_and_a_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(journal_module, "PURGE_CHUNK", 10)
    slept: list[float] = []
    monkeypatch.setattr(journal_module.time, "sleep", slept.append)
    j = Journal(tmp_path / "j.db", "g1")
    j.db.executemany("INSERT INTO events(event_id, gate_id, t, kind, sent) VALUES (?, 'g1', 1.0, 's', 1)",
                     [(f"e{n}",) for n in range(25)])
    j.db.executemany("INSERT INTO redemptions VALUES (?, 'p', 'g1', 'entry', 1.0, 'committed', 1.0)",
                     [(f"r{n}",) for n in range(12)])
    assert purge(j.db, j.write_lock, 2.0, False, wait_s=1.0, max_chunks=2) == (20, False)
    assert slept == [0.01, 0.01] and j.backlog() == 0 and len(j.events()) == 5
    assert purge(j.db, j.write_lock, 2.0, False, wait_s=1.0) == (5, True)
    assert rows(j, "SELECT count(*) FROM redemptions") == [(0,)] and len(slept) == 3
    assert purge(j.db, j.write_lock, 2.0, False, wait_s=1.0, pause_s=0) == (0, True)
    j.db.execute("INSERT INTO events(event_id, gate_id, t, kind, sent) VALUES ('x', 'g1', 1.0, 's', 1)")
    j.db.execute("PRAGMA query_only = 1")
    with pytest.raises(JournalError, match=r"^journal is read-only$"):
        purge(j.db, j.write_lock, 2.0, False, wait_s=1.0)
    assert not j.db.in_transaction and not j.write_lock.locked()  # rolled back, lock given back


def test_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "g1") as j:
        j.record("state")
    assert quick_check(path) is None
    corrupt(path, "events_t")
    assert (quick_check(path) or "").startswith("journal damaged: ")
    with pytest.raises(JournalError):
        quick_check(tmp_path)  # a directory: the check cannot run (not damage)
    path.write_bytes(b"\xff" * 4096)
    assert quick_check(path) == "journal damaged: file is not a database"


def test_set_aside_moves_the_file_and_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").write_text(suffix or "main")
    first = set_aside(path, tmp_path / "damaged", 1_800_000_000.0)
    assert first == tmp_path / "damaged" / "journal-20270115T080000.db"
    assert [Path(f"{first}{s}").read_text() for s in ("", "-wal", "-shm")] == ["main", "-wal", "-shm"]
    assert not any(Path(f"{path}{s}").exists() for s in ("", "-wal", "-shm"))
    path.write_text("again")
    second = set_aside(path, tmp_path / "damaged", 1_800_000_000.0)
    assert second.name == "journal-20270115T080000-2.db" and second.read_text() == "again"
    path.write_text("third")
    assert set_aside(path, tmp_path / "damaged", 1_800_000_000.0).name == "journal-20270115T080000-3.db"


def test_open_journal_sets_damage_aside(tmp_path: Path) -> None:
    path, aside, marker = tmp_path / "journal.db", tmp_path / "damaged", tmp_path / "journal.db.damaged"
    good = open_journal(path, "g1", aside_dir=aside, clock=FakeClock(1_800_000_000.0), damaged_marker=marker)
    good.commit(good.record_decision(admit(), 1, reserve=True))
    assert good.history_missing() is None
    good.close()
    assert not aside.exists()
    marker.write_text("journal damaged: found by the upkeep\n")
    j = open_journal(path, "g1", aside_dir=aside, clock=FakeClock(1_800_000_000.0), damaged_marker=marker)
    assert not marker.exists() and [p.name for p in aside.iterdir()] == ["journal-20270115T080000.db"]
    assert j.history_missing() == (
        "journal damaged: found by the upkeep; set aside as journal-20270115T080000.db")
    (event,) = j.events("journal_set_aside")
    assert event["detail"].startswith("journal damaged: found by the upkeep; set aside as ")
    assert j.usage(admit().pass_id).entries_used == 0 and len(j.events()) == 1
    j.close()
    path.write_bytes(b"\xff" * 4096)
    again = open_journal(path, "g1", aside_dir=aside, clock=FakeClock(1_800_000_001.0))
    assert (again.history_missing() or "").startswith("journal damaged: file is not a database; set aside as")
    again.close()
    corrupt(path, "redemptions_pass")
    third = open_journal(path, "g1", aside_dir=aside, clock=FakeClock(1_800_000_002.0))
    assert "malformed" in (third.history_missing() or "") and len(list(aside.glob("*.db"))) == 3
    third.close()
    blocked = tmp_path / "blocked.db"
    blocked.mkdir()
    unavailable = open_journal(blocked, "g1", aside_dir=aside)
    assert unavailable.unavailable is not None and blocked.is_dir()  # not damage: nothing set aside


def test_salvage_copies_what_can_be_read(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with Journal(old, "g1") as j:
        kept = admit()
        j.commit(j.record_decision(kept, 1, reserve=True))
        left = admit()
        j.record_decision(left, 1, reserve=True)  # in flight when the file was damaged
    new = Journal(tmp_path / "new.db", "g1")
    assert salvage(old, new) == (2, 0)
    assert new.usage(kept.pass_id).entries_used == 1 and new.usage(left.pass_id).entries_used == 1
    assert sorted(r[0] for r in rows(new, "SELECT state FROM redemptions")) == ["assumed", "committed"]
    assert salvage(old, new) == (0, 0)  # idempotent
    assert salvage(tmp_path / "missing.db", new) == (0, 1)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\xff" * 4096)
    assert salvage(garbage, new) == (0, 1)


def page_of(path: Path, marker: bytes, kind: int | None = None) -> tuple[int, int]:
    """(page number from 1, page size) of the first page holding ``marker`` in a checkpointed file;
    ``kind``: only a b-tree page of that type (13: a table's leaf)."""
    data = path.read_bytes()
    size = int.from_bytes(data[16:18], "big")
    at = data.find(marker)
    while kind is not None and data[at // size * size] != kind:
        at = data.find(marker, at + 1)
    assert at >= 0
    return at // size + 1, size


def test_a_journal_is_created_with_its_folders_and_used_from_another_thread(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "passgate" / "journal.db"
    j = Journal(path, "g1")  # opened in the main thread, written by the control loop's thread
    done: list[str] = []
    worker = threading.Thread(target=lambda: done.append(j.record("state", detail="from a thread")))
    worker.start()
    worker.join(5)
    assert len(done) == 1 and [e["detail"] for e in j.events()] == ["from a thread"]


def test_the_on_disk_names_of_what_survives_a_restart(tmp_path: Path) -> None:
    """A journal written by another version of the gate: the meta keys are part of the file format."""
    path = tmp_path / "j.db"
    Journal(path, "g1").close()
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("history_missing", "set aside earlier"),
                                                     ("emergency_latched", "1")])
    db.commit()
    db.close()
    with Journal(path, "g1") as j:
        assert (j.history_missing(), j.emergency_latched()) == ("set aside earlier", True)


def test_a_journal_locked_at_boot_opens_by_itself_once_free(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "g1") as j:
        j.record_decision(admit(), 1.0, reserve=True)  # a crash leaves this reservation
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the recovery's write waits for this one
    j = Journal(path, "g1", write_timeout_s=0.05, defer_errors=True)
    assert (j.unavailable, j.recovered) == ("journal locked by another process", 0)
    other.execute("ROLLBACK")
    other.close()
    j.record("state")  # opened on this use, its recovery done
    assert (j.unavailable, j.recovered) == (None, 1)
    assert [e["kind"] for e in j.events()] == ["decision", "reservation_assumed", "state"]


def test_recovery_detail_and_damage_found_by_the_recovery(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "g1") as j:
        j.record_decision(admit(), 1.0, reserve=True)
    with Journal(path, "g1") as j:
        assert [e["detail"] for e in j.events("reservation_assumed")] == [
            "reserved before a restart: counted as used"]
    corrupt(path, "redemptions_reserved")  # the recovery reads this index first
    with pytest.raises(JournalDamaged, match=r"^journal damaged: "):
        Journal(path, "g1", defer_errors=True)


def test_a_failed_open_leaves_no_file_open(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"\xff" * 4096)
    for _ in range(20):
        with pytest.raises(JournalDamaged):
            Journal(path, "g1")
    assert open_files(tmp_path) == []


def test_a_failed_write_is_rolled_back_and_the_next_one_works(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    with pytest.raises(JournalError, match="binding parameter"):
        j.record("state", detail=object())  # type: ignore[arg-type]
    assert not j.db.in_transaction and not j.write_lock.locked()
    with pytest.raises(ZeroDivisionError), j._tx():
        j.db.execute("INSERT INTO meta VALUES ('half', 'done')")
        _ = 1 / 0
    assert rows(j, "SELECT * FROM meta") == [] and not j.db.in_transaction
    j.record("state")
    assert [e["kind"] for e in j.events()] == ["state"]


def test_a_closed_journal_leaves_its_wal_empty(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path, "g1")
    for n in range(50):
        j.record("state", detail=str(n))
    assert os.path.getsize(f"{path}-wal") > 0
    status_page = sqlite3.connect(path)  # another connection stays: SQLite's own cleanup at the
    status_page.execute("SELECT count(*) FROM events").fetchall()  # last close would not run
    j.close()
    assert os.path.getsize(f"{path}-wal") == 0  # checkpointed: the .db alone holds everything
    status_page.close()
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 50
    db.close()


def test_usage_of_a_pass_that_only_entered(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1", clock=FakeClock(500.0))
    d = admit()
    j.commit(j.record_decision(d, 1.0, reserve=True))
    usage = j.usage(d.pass_id)
    assert (usage.entries_used, usage.inside, usage.exited, usage.last_entry_t) == (1, True, False, 500.0)


def test_purge_by_days_to_the_second_and_without_pauses(tmp_path: Path, monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(journal_module.time, "sleep", slept.append)
    monkeypatch.setattr(journal_module, "PURGE_CHUNK", 2)
    now = 1_800_000_000.0
    j = Journal(tmp_path / "j.db", "g1", clock=FakeClock(now))
    ages = {"older": 86_400.5, "younger": 86_399.5, "a": 90_000, "b": 90_001, "c": 90_002}
    j.db.executemany("INSERT INTO events(event_id, gate_id, t, kind, sent) VALUES (?, 'g1', ?, 's', 1)",
                     [(name, now - age) for name, age in ages.items()])
    assert j.purge(1) == 4  # one day is 86,400 s; the operator's command does not pause
    assert [e["event_id"] for e in j.events()] == ["younger"] and slept == []


def test_a_lock_from_another_connection_of_this_process(tmp_path: Path) -> None:
    uri = f"file:{tmp_path / 'shared.db'}?cache=shared"
    writer = sqlite3.connect(uri, uri=True, isolation_level=None)
    writer.execute("CREATE TABLE t(x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    reader = sqlite3.connect(uri, uri=True)
    with pytest.raises(sqlite3.OperationalError) as raised:
        reader.execute("SELECT * FROM t").fetchall()
    assert raised.value.sqlite_errorname.startswith("SQLITE_LOCKED")
    assert str(journal_module._cause(raised.value)) == "journal locked by another process"
    writer.execute("ROLLBACK")
    reader.close()
    writer.close()


def test_open_journal_without_a_marker_and_with_odd_ones(tmp_path: Path) -> None:
    path, aside, marker = tmp_path / "journal.db", tmp_path / "a" / "damaged", tmp_path / "journal.db.damaged"
    path.write_bytes(b"\xff" * 4096)  # damaged, and no marker file: the marker is optional
    j = open_journal(path, "g1", aside_dir=aside, clock=FakeClock(1_800_000_000.0), damaged_marker=marker)
    assert (j.history_missing() or "").startswith("journal damaged: file is not a database; set aside as")
    j.close()
    marker.write_text("  \n")
    j = open_journal(path, "g1", aside_dir=aside, clock=FakeClock(1_800_000_001.0), damaged_marker=marker)
    assert j.history_missing() == "journal damaged; set aside as journal-20270115T080001.db"
    j.close()
    marker.write_bytes(b"\xffbad page 7")
    j = open_journal(path, "g1", aside_dir=aside, clock=FakeClock(1_800_000_002.0), damaged_marker=marker)
    assert j.history_missing() == "\ufffdbad page 7; set aside as journal-20270115T080002.db"
    j.close()


def test_the_journal_that_replaces_a_damaged_one_keeps_what_it_records(tmp_path: Path) -> None:
    path, aside = tmp_path / "journal.db", tmp_path / "damaged"
    with Journal(path, "g1") as j:
        for n in range(20):
            j.record("state", detail=str(n))
    corrupt(path, "redemptions_pass")  # found by the check after opening, not by the open
    j = open_journal(path, "g1", aside_dir=aside)
    d = admit()
    j.commit(j.record_decision(d, 1.0, reserve=True))
    assert open_files(aside) == []  # the damaged journal was closed before it was moved
    j.close()
    with Journal(path, "g1") as reopened:
        assert reopened.usage(d.pass_id).entries_used == 1
        assert [e["kind"] for e in reopened.events()] == ["journal_set_aside", "decision", "redeemed"]


def test_salvage_counts_what_it_could_not_read(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with Journal(old, "g1") as j:
        j.db.execute("INSERT INTO redemptions VALUES ('big', ?, 'g1', 'entry', 1.0, 'committed', NULL)",
                     ("O" * 12_000,))  # the first row, its pass id over several overflow pages
        for n in range(400):
            j.db.execute("INSERT INTO redemptions VALUES (?, 'p', 'g1', 'entry', 1.0, 'committed', NULL)",
                         (f"rid-{n:04d}-" + "x" * 40,))
    data = bytearray(old.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    overflow = [at for at in range(0, len(data), size) if data[at + 4 : at + 4 + 1000] == b"O" * 1000]
    chained = [at for at in overflow if data[at : at + 4] != bytes(4)]  # all but the chain's last
    assert len(overflow) >= 2 and chained
    for at in chained:
        data[at : at + 4] = (2**31).to_bytes(4, "big")  # a next-page pointer past the end of the file
    late, _ = page_of(old, b"rid-0300-", kind=13)
    data[(late - 1) * size : (late - 1) * size + 12] = b"\xff" * 12  # a leaf late in the rowid order
    old.write_bytes(data)
    new = Journal(tmp_path / "new.db", "g1")
    copied, skipped = salvage(old, new)
    assert skipped == 2 and 250 <= copied < 400  # the big row, and the rows from the damaged page on
    copied_ids = {r[0] for r in rows(new, "SELECT redemption_id FROM redemptions")}
    assert "big" not in copied_ids and "rid-0000-" + "x" * 40 in copied_ids
    assert "rid-0300-" + "x" * 40 not in copied_ids


def test_reading_events_from_a_damaged_journal_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "g1") as j:
        j.record("state")
    corrupt(path, "events")
    damaged = Journal(path, "g1", recover=False)
    with pytest.raises(JournalDamaged):
        damaged.events()
    with pytest.raises(JournalDamaged):
        damaged.unsent(10)


def test_a_journal_of_an_older_gate_gains_the_entries_column(tmp_path: Path) -> None:
    """A gate updated in place keeps its journal: the column protocol 2 sends is added at open."""
    old = sqlite3.connect(tmp_path / "j.db")
    before = journal_module.SCHEMA.replace("    sent INTEGER NOT NULL DEFAULT 0,\n    entries INTEGER\n",
                                           "    sent INTEGER NOT NULL DEFAULT 0\n")
    assert before != journal_module.SCHEMA
    old.executescript(before)
    old.execute("INSERT INTO events(event_id, gate_id, t, kind) VALUES ('e0', 'g1', 1.0, 'state')")
    old.commit()
    assert "entries" not in {row[1] for row in old.execute("PRAGMA table_info(events)")}
    old.close()
    with Journal(tmp_path / "j.db", "g1") as j:
        j.record_decision(admit(entries=1), 1.0, reserve=True)
        assert [(e["event_id"] == "e0", e["entries"]) for e in j.events()] == [(True, None), (False, 1)]
