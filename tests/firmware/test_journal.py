"""The journal on a real SQLite file: durability settings, crash recovery, usage, outbox, purge."""

import pickle
import subprocess
import sys
from pathlib import Path

from passgate import Reason, TrustStore, generate_private_key, issue_pass, verify_signature
from passgated.journal import Journal
from passgated.policy import Decision, Direction

KEY = generate_private_key()
TRUST = TrustStore()
TRUST.add(KEY.public_key())


def admit(direction=Direction.ENTRY, valid_until=2**31):
    p = verify_signature(issue_pass(KEY, valid_from=0, valid_until=valid_until), TRUST)
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
    assert j.backlog() == 2 and [e["event_id"] for e in j.unsent()] == [e["event_id"] for e in j.events()[3:]]


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
