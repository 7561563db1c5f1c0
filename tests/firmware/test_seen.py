"""The journal's filter of passes it may hold a redemption of (``passgated.seen``), on real SQLite
files: a clear bit must always be true, whoever wrote the rows and however, and a pass never
redeemed is answered without asking SQLite."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import passgated.journal as journal_module
import passgated.seen as seen_module
from passgate import Pass, Reason
from passgated.journal import Journal
from passgated.policy import Decision, Direction, Usage
from tests.helpers import examples


def decision(pass_id: bytes, direction: Direction = Direction.ENTRY) -> Decision:
    p = Pass(pass_id, kid=b"k", alg=-8, valid_from=0, valid_until=2**31)
    return Decision(True, Reason.ADMIT, "Welcome", direction, p)


@contextlib.contextmanager
def statements(journal: Journal) -> Iterator[list[str]]:
    """The statements SQLite runs on the journal's own connection meanwhile."""
    seen: list[str] = []
    journal.db.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        journal.db.set_trace_callback(None)


def other_writer(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A connection of its own: rows as another process (``passgated journal recover``) writes them."""
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


def insert(db: sqlite3.Connection, pass_id: bytes, *, direction: str = "entry", t: float = 1.0,
           state: str = "committed") -> str:
    rid = uuid.uuid4().hex
    db.execute("INSERT INTO redemptions VALUES (?, ?, 'g2', ?, ?, ?, NULL)",
               (rid, pass_id.hex(), direction, t, state))
    return rid


def test_a_pass_never_redeemed_is_answered_without_sqlite(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    used = os.urandom(16)
    rid = j.record_decision(decision(used), 1.0, reserve=True)
    assert rid is not None
    j.commit(rid)
    with statements(j) as ran:
        assert j.usage(os.urandom(16)) == Usage()
        assert ran == []
        assert j.usage(used).entries_used == 1  # its bit is set: SQLite answers
        assert len(ran) == 1
    j.close()


def test_redemptions_written_by_another_journal_of_this_process_count_at_once(tmp_path: Path) -> None:
    """The sync worker's journal writes the venue's redemptions: the control loop's filter knows
    them before the row commits, with no catch-up."""
    loop = Journal(tmp_path / "j.db", "g1")
    sync = Journal(tmp_path / "j.db", "g1", recover=False)
    remote = os.urandom(16)
    assert sync.add_remote_redemption("r1", remote.hex(), "g2", "entry", 5.0)
    assert loop.usage(remote).entries_used == 1
    sync.close()
    loop.close()


def test_rows_another_process_writes_count_from_the_next_catch_up(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    recovered = os.urandom(16)
    with other_writer(tmp_path / "j.db") as db:
        insert(db, recovered)
    j.catch_up()
    assert j.usage(recovered).entries_used == 1
    with statements(j) as ran:
        j.catch_up()  # nothing new: one look at SQLite's data version, no rows read
        assert ran == ["PRAGMA data_version"]
    j.close()


def test_a_rowid_given_again_after_the_last_row_was_deleted_is_not_missed(tmp_path: Path) -> None:
    """Without an INTEGER PRIMARY KEY, SQLite gives a new row the largest rowid + 1: once the
    newest row is deleted, the next row takes its rowid, which "rows after the last one read"
    would skip."""
    j = Journal(tmp_path / "j.db", "g1")
    first, second, third = (os.urandom(16) for _ in range(3))
    with other_writer(tmp_path / "j.db") as db:
        insert(db, first)
        rid = insert(db, second)
        j.catch_up()
        db.execute("DELETE FROM redemptions WHERE redemption_id = ?", (rid,))
        insert(db, third)  # the deleted row's rowid
        assert db.execute("SELECT max(rowid) FROM redemptions").fetchone()[0] == 2
    j.catch_up()
    assert j.usage(third).entries_used == 1
    j.close()


def test_a_large_journal_is_read_by_a_thread_and_asks_sqlite_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen_module, "AT_ONCE", 10)
    monkeypatch.setattr(seen_module, "CHUNK", 7)
    path = tmp_path / "j.db"
    Journal(path, "g1").close()
    ids = [os.urandom(16) for _ in range(40)]
    with other_writer(path) as db:
        for pass_id in ids:
            insert(db, pass_id)
    j = Journal(path, "g1")
    seen = j._seen
    assert seen is not None
    assert j.usage(ids[0]).entries_used == 1  # read or not, the answer is SQLite's until ready
    assert seen._reader is not None
    seen._reader.join(10)
    late = os.urandom(16)
    with other_writer(path) as db:  # after the thread's snapshot: the catch-up takes it
        insert(db, late)
    j.catch_up()
    assert seen.ready
    assert all(j.usage(pass_id).entries_used == 1 for pass_id in [*ids, late])
    with statements(j) as ran:
        assert j.usage(os.urandom(16)) == Usage()
        assert ran == []
    j.close()


def test_a_reader_that_fails_is_started_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen_module, "AT_ONCE", 1)
    path = tmp_path / "j.db"
    Journal(path, "g1").close()
    with other_writer(path) as db:
        redeemed = [os.urandom(16) for _ in range(3)]
        for pass_id in redeemed:
            insert(db, pass_id)
    calls = []
    real = journal_module._connect_read_only

    def flaky(p: str | Path) -> contextlib.closing[sqlite3.Connection]:
        calls.append(p)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real(p)

    monkeypatch.setattr(journal_module, "_connect_read_only", flaky)
    j = Journal(path, "g1")
    seen = j._seen
    assert seen is not None
    for _ in range(3):  # fails; started again by a catch-up; done, then ready at the next
        if seen._reader is not None:
            seen._reader.join(10)
        j.catch_up()
    assert len(calls) == 2 and seen.ready
    assert all(j.usage(pass_id).entries_used == 1 for pass_id in redeemed)
    j.close()


def test_ids_a_hub_sends_that_are_not_hex_never_break_a_write(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "g1")
    for i, odd in enumerate(["zz" * 16, "", "AB" * 16, "abc", "0x12", "é" * 6]):
        assert j.add_remote_redemption(f"r{i}", odd, "g2", "entry", 1.0)
    with other_writer(tmp_path / "j.db") as db:
        db.execute("INSERT INTO redemptions VALUES ('x', 'ab\u00e9', 'g2', 'entry', 1.0, 'committed', NULL)")
    j.catch_up()
    sql = Journal(tmp_path / "j.db", "g1", recover=False)
    for pass_id in (bytes.fromhex("ab" * 16), bytes.fromhex("0abc"), b"", bytes(16)):
        assert j.usage(pass_id) == sql.usage(pass_id)
    sql.close()
    j.close()


# Pass ids from a few shared tails, so that filter bits are shared and both answers are exercised.
TAILS = (b"\x00\x00\x01", b"\xff\x10\x00", b"\x12\x34\x56")
IDS = [bytes([a]) * 13 + tail for a in range(3) for tail in TAILS]
OPS = st.lists(st.tuples(st.sampled_from(["reserve", "commit", "release", "remote", "other", "delete_newest",
                                          "purge_all", "reopen"]),
                         st.sampled_from(IDS), st.sampled_from(["entry", "exit"])), max_size=25)


@settings(max_examples=examples(25, 60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_the_filter_never_answers_otherwise_than_sqlite(ops: list[tuple[str, bytes, str]]) -> None:
    """Any mix of the loop's own writes, another journal's, another process's (then a catch-up),
    deletions that give rowids again and restarts: for every pass the filtered answer is SQLite's."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j.db"
        loop = Journal(path, "g1")
        sync = Journal(path, "g1", recover=False)
        sql = Journal(path, "g1", recover=False)  # no filter: SQLite's answer
        reserved: list[str] = []
        with other_writer(path) as db:
            for op, pass_id, direction in ops:
                if op == "reserve":
                    rid = loop.record_decision(decision(pass_id, Direction(direction)), 1.0, reserve=True)
                    assert rid is not None
                    reserved.append(rid)
                elif op in ("commit", "release") and reserved:
                    getattr(loop, op)(reserved.pop())
                elif op == "remote":
                    sync.add_remote_redemption(uuid.uuid4().hex, pass_id.hex(), "g2", direction, 2.0)
                elif op == "other":
                    insert(db, pass_id, direction=direction)
                    loop.catch_up()
                elif op == "delete_newest":
                    db.execute("DELETE FROM redemptions WHERE rowid = (SELECT max(rowid) FROM redemptions)")
                    loop.catch_up()
                elif op == "purge_all":
                    db.execute("DELETE FROM redemptions")
                    loop.catch_up()
                elif op == "reopen":
                    loop.close()
                    loop = Journal(path, "g1")
                for each in IDS:
                    assert loop.usage(each) == sql.usage(each), (op, each.hex())
        for journal in (loop, sync, sql):
            journal.close()
