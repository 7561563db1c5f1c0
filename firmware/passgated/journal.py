"""The gate's journal: every decision and every redemption, in SQLite, durable.

WAL mode with ``synchronous=FULL``: a reservation is on disk before the relay is pulsed and a
passage is on disk before it counts, so a power cut loses nothing the gate acted on. On open,
a reservation left behind by a crash is counted as used ("assumed"): the holder may have walked
through, and a single-use pass must never admit twice.

Every failure to record is a ``JournalError`` with a one-line cause for the guard page: SQLite's
errors (disk full, I/O error, locked by another process, damaged file) and a write that took
longer than ``write_timeout_s`` (an SD card stalling in fsync). A grant's reservation that was
written too slowly is given back before the error is raised, so the refused holder keeps the entry.

A damaged journal is set aside at start (``open_journal``), kept for evidence, and a new one is
marked as missing its redemption history (``history_missing``) until the hub has sent it again or an
operator ran ``passgated journal recover``.

Entries used and anti-passback state are read from here, so a restart forgets nothing; a pass the
journal never redeemed (the usual scan) is told apart without SQLite by ``SeenPasses``. The
``events`` table doubles as the sync outbox (``sent``: 0 queued, 1 acknowledged by the hub, 2 refused
by the hub as malformed and kept only for audit). Pass ids are stored as hex, never a name; what is
kept and for how long is README's "Privacy" (``purge``; tests/test_privacy_claims.py checks it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from passgate import wire

from .policy import Decision, Direction, Usage
from .records import EventKind
from .seen import SeenPasses, for_path

log = logging.getLogger("passgated.journal")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    gate_id TEXT NOT NULL,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    direction TEXT,
    pass_id TEXT,
    decision TEXT,
    reason TEXT,
    latency_ms REAL,
    detail TEXT,
    sent INTEGER NOT NULL DEFAULT 0,
    entries INTEGER
);
CREATE INDEX IF NOT EXISTS events_unsent ON events(seq) WHERE sent = 0;
CREATE INDEX IF NOT EXISTS events_t ON events(t);
CREATE TABLE IF NOT EXISTS redemptions(
    redemption_id TEXT PRIMARY KEY,
    pass_id TEXT NOT NULL,
    gate_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    t REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released', 'assumed')),
    valid_until REAL
);
CREATE INDEX IF NOT EXISTS redemptions_pass ON redemptions(pass_id, t);
CREATE INDEX IF NOT EXISTS redemptions_reserved ON redemptions(redemption_id) WHERE state = 'reserved';
CREATE INDEX IF NOT EXISTS redemptions_valid_until ON redemptions(valid_until);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# A journal row is the contract's event: the same fields, sent as they are.
EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(wire.Event))
COUNTED = ("reserved", "committed", "assumed")
# COUNTED spelled into the statement: bound as parameters of ``IN (?, ?, ?)``, SQLite builds a table
# of them on every run, and a pass with redemptions cost 9.6 µs to look up against 6.3 µs.
USAGE_SQL = ("SELECT direction, t FROM redemptions WHERE pass_id = ? AND ("
             + " OR ".join(f"state = '{state}'" for state in COUNTED) + ") ORDER BY t")
UNUSED = Usage()
MAX_ENTRIES = wire.MAX_ENTRIES
DEFAULT_WRITE_TIMEOUT_S = 0.3  # a grant waits this long at most for its record; then it is refused
PURGE_CHUNK = 100  # rows a transaction: ~1 ms each on a 1 M-passage journal, so a scan barely waits
PURGE_PAUSE_S = 0.01  # between chunks, so the control loop's writes go first
META_HISTORY_MISSING = "history_missing"
META_EMERGENCY_LATCHED = "emergency_latched"
META_PROBE = "probe"
READ_TIMEOUT_S = 5.0  # read-only connections: in WAL mode they wait only while a writer recovers the WAL


def _entries(decision: Decision) -> int | None:
    """An admitted pass's own entry limit, so the hub can tell a double use of any issuer's pass
    (beyond the wire's bound it is as good as unlimited)."""
    entries = decision.pass_.entries if decision.admit and decision.pass_ else None
    return entries if entries is not None and entries <= MAX_ENTRIES else None


def _add_columns(db: sqlite3.Connection) -> None:
    """Columns newer than a journal written by an older gate (``entries``: protocol 2)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    if "entries" not in columns:
        db.execute("ALTER TABLE events ADD COLUMN entries INTEGER")


class JournalError(Exception):
    """The journal could not record or read; the message is one line for the guard page."""


class JournalDamaged(JournalError):
    """The journal file is damaged: the gate stays out of service until it is set aside."""


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection, lock: threading.Lock, wait_s: float) -> Iterator[None]:
    """One durable write transaction under ``lock``; on any error it is rolled back, and SQLite's
    errors leave as ``JournalError``. A transaction left open would refuse every later write.

    The lock is waited for at most ``wait_s`` (the write bound): another thread's write stalled in
    fsync, or waiting for another process's lock, must not hold a scan past the bound."""
    if not lock.acquire(timeout=wait_s):
        raise JournalError(f"journal locked: another write held it over {wait_s:g} s")
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            if db.in_transaction:
                db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise _cause(exc) from exc
        raise
    finally:
        lock.release()


def _connect_read_only(path: str | Path) -> contextlib.closing[sqlite3.Connection]:
    """A read-only connection of its own, closed on leaving the ``with`` (no file is created)."""
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=READ_TIMEOUT_S))


def _cause(exc: sqlite3.Error) -> JournalError:
    """SQLite's error, by its result code, as a cause a guard or operator understands."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return JournalDamaged(f"journal damaged: {exc}")
    if name.startswith("SQLITE_FULL"):
        return JournalError("disk full")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return JournalError("journal locked by another process")
    if name.startswith("SQLITE_IOERR"):
        return JournalError(f"disk I/O error ({name})")
    if name.startswith("SQLITE_READONLY"):
        return JournalError("journal is read-only")
    return JournalError(str(exc))


class Journal:
    """One gate's journal; the control loop's writes go through one connection. Readers and the
    upkeep worker open their own.

    >>> j = Journal(":memory:", gate_id="g1")
    >>> j.usage(bytes(16)).entries_used
    0
    """

    def __init__(self, path: str | Path, gate_id: str, *, clock: Callable[[], float] = time.time,
                 recover: bool = True, write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
                 monotonic: Callable[[], float] = time.monotonic, defer_errors: bool = False) -> None:
        """``recover=False`` for a second connection (sync worker, status page): only the control
        loop's own connection may turn a crash's leftover reservations into used entries.

        SQLite's automatic checkpoint is off: inside a commit it fsyncs the database and measured
        30-80 ms stalls on the scan path; ``JournalUpkeep`` checkpoints from its own connection.
        Raises ``JournalError`` (``JournalDamaged`` for a damaged file); with ``defer_errors`` a
        journal that cannot be opened yet (a full disk at boot) is ``unavailable`` instead, and
        every use tries to open it again until it succeeds."""
        self.path = str(path)
        self.gate_id = gate_id
        self.clock = clock
        self.monotonic = monotonic
        self.write_timeout_s = write_timeout_s
        self.recover = recover
        self.recovered = 0
        # Shared with the upkeep worker, whose waits (for this lock and for SQLite's) have the same
        # bound: a purge chunk waits for the loop's write, and the loop waits at most the bound.
        self.write_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None  # set by _open
        self._closed = False
        # The control loop's journal (the one that recovers) answers usage through a filter; a file
        # in memory is this connection's alone.
        self._seen_key = os.path.realpath(self.path) if self.path != ":memory:" else f"memory:{id(self)}"
        self._seen = SeenPasses(self._seen_key) if recover else None
        self.unavailable: str | None = None  # why it could not be opened (defer_errors)
        try:
            self._open()
        except JournalDamaged:
            raise
        except JournalError as exc:
            if not defer_errors:
                raise
            self.unavailable = str(exc)
            log.error("journal %s cannot be opened (%s): out of service until it can", self.path, exc)

    def _open(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)  # ":memory:" has ".": no-op
            db = sqlite3.connect(self.path, isolation_level=None, timeout=self.write_timeout_s,
                                 check_same_thread=False)
        except OSError as exc:
            raise JournalError(f"cannot create the journal ({exc})") from exc
        except sqlite3.Error as exc:
            raise _cause(exc) from exc
        try:
            # Waiting for another writer longer than this refuses the scan; the busy wait is
            # SQLite's, so the bound holds for a journal locked by another process too.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.executescript(SCHEMA)
            _add_columns(db)
            self._db = db
            self.recovered = self._recover() if self.recover else 0
            if self._seen is not None:
                in_memory = self.path == ":memory:"
                self._seen.start(db, None if in_memory else lambda: _connect_read_only(self.path))
        except (sqlite3.Error, JournalError) as exc:
            self._db = None
            db.close()
            if isinstance(exc, JournalError):
                raise
            raise _cause(exc) from exc
        self.unavailable = None

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, opened now if it could not be before (raises ``JournalError``)."""
        if self._db is None:
            if self._closed:
                raise JournalError("journal closed")
            self._open()
            log.warning("journal %s opened after all", self.path)
            assert self._db is not None
        return self._db

    def _recover(self) -> int:
        """Count reservations left by a crash as used; returns how many there were."""
        with self._tx():
            rows = self.db.execute(
                "SELECT redemption_id, pass_id, direction FROM redemptions WHERE state = 'reserved'"
            ).fetchall()
            for rid, pass_id, direction in rows:
                self.db.execute("UPDATE redemptions SET state = 'assumed' WHERE redemption_id = ?", (rid,))
                self._insert_event(EventKind.RESERVATION_ASSUMED, direction=direction, pass_id=pass_id,
                                   detail="reserved before a restart: counted as used")
        return len(rows)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One durable write transaction; SQLite's errors leave as ``JournalError``, rolled back."""
        db = self.db  # opened first: opening recovers reservations in a transaction of its own
        with _transaction(db, self.write_lock, self.write_timeout_s):
            yield

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _cause(exc) from exc

    def _read_events(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Events as dicts keyed by ``EVENT_FIELDS``, oldest first."""
        try:
            cursor = self.db.cursor()
            cursor.row_factory = sqlite3.Row
            rows = cursor.execute(f"SELECT {', '.join(EVENT_FIELDS)} FROM events {where}", args).fetchall()
        except sqlite3.Error as exc:
            raise _cause(exc) from exc
        return [dict(row) for row in rows]

    def _insert_event(self, kind: str, **fields: Any) -> str:
        event_id = uuid.uuid4().hex
        row = {"event_id": event_id, "gate_id": self.gate_id, "t": self.clock(), "kind": str(kind), **fields}
        self.db.execute(
            f"INSERT INTO events({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        return event_id

    # -- the control loop's writes ------------------------------------------------------------
    def record_decision(self, decision: Decision, latency_ms: float, *, reserve: bool = False) -> str | None:
        """Journal a decision; with ``reserve``, also reserve its redemption in the same durable
        transaction and return the redemption id.

        Raises ``JournalError`` when it could not, or when the write took longer than the bound:
        the scan will then be refused for a gate fault, so a reservation written that late is given
        back and the row is corrected to that refusal (the journal holds what the guard saw)."""
        pass_id = decision.pass_id.hex() if decision.pass_id else None
        started = self.monotonic()
        rid = None
        with self._tx():
            event_id = self._insert_event(
                EventKind.DECISION, direction=str(decision.direction), pass_id=pass_id,
                decision=decision.verdict, reason=str(decision.reason), latency_ms=latency_ms,
                detail=decision.detail or decision.text,
                entries=_entries(decision),
            )
            if reserve and pass_id:
                rid = uuid.uuid4().hex
                valid_until = decision.pass_.valid_until if decision.pass_ else None
                self._insert_redemption("INSERT", (rid, pass_id, self.gate_id, str(decision.direction),
                                                   self.clock(), "reserved", valid_until))
        took = self.monotonic() - started
        if took > self.write_timeout_s:
            slow = JournalError(f"journal write took {took:.2f} s (limit {self.write_timeout_s:g} s)")
            with contextlib.suppress(JournalError):
                self._correct_to_fault(event_id, rid, decision.refused_for_fault(str(slow)))
            raise slow
        return rid

    def _correct_to_fault(self, event_id: str, rid: str | None, refusal: Decision) -> None:
        if rid is not None:
            self.release(rid)
        with self._tx():
            self.db.execute("UPDATE events SET decision = ?, reason = ?, detail = ?, entries = ? "
                            "WHERE event_id = ?", (refusal.verdict, str(refusal.reason), refusal.detail,
                                                   _entries(refusal), event_id))

    def commit(self, redemption_id: str) -> None:
        """The holder walked through: the redemption counts (durably, before this returns)."""
        self._finish(redemption_id, "committed", EventKind.REDEEMED)

    def release(self, redemption_id: str) -> None:
        """The holder did not walk through: the entry is given back."""
        self._finish(redemption_id, "released", EventKind.RELEASED)

    def _finish(self, redemption_id: str, state: str, kind: EventKind) -> None:
        with self._tx():
            row = self.db.execute(
                "SELECT pass_id, direction FROM redemptions WHERE redemption_id = ? AND state = 'reserved'",
                (redemption_id,),
            ).fetchone()
            if row is None:
                return
            self.db.execute("UPDATE redemptions SET state = ?, t = ? WHERE redemption_id = ?",
                            (state, self.clock(), redemption_id))
            self._insert_event(kind, direction=row[1], pass_id=row[0], detail=redemption_id)

    def record(self, kind: EventKind, *, direction: str | None = None, detail: str = "",
               pass_id: str | None = None) -> str:
        """Journal any other event (passage, forced_passage, tamper, state change, …)."""
        with self._tx():
            return self._insert_event(kind, direction=direction, detail=detail, pass_id=pass_id)

    def probe(self) -> None:
        """One small durable write: does the journal record again? Raises ``JournalError``."""
        started = self.monotonic()
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (META_PROBE, repr(self.clock())))
        took = self.monotonic() - started
        if took > self.write_timeout_s:
            raise JournalError(f"journal write took {took:.2f} s (limit {self.write_timeout_s:g} s)")

    def add_remote_redemption(self, redemption_id: str, pass_id: str, gate_id: str, direction: str,
                              t: float, valid_until: float | None = None) -> bool:
        """A redemption made at another gate of the venue (from the hub); idempotent."""
        with self._tx():
            added = self._insert_redemption("INSERT OR IGNORE", (redemption_id, pass_id, gate_id, direction,
                                                                 t, "committed", valid_until))
        return added == 1

    def _insert_redemption(self, verb: str, row: tuple[Any, ...]) -> int:
        """Insert one redemption row (inside a transaction), its pass marked as seen first in every
        filter of this file; returns the rows inserted."""
        for seen in for_path(self._seen_key):
            seen.mark(row[1])
        return int(self.db.execute(f"{verb} INTO redemptions VALUES (?, ?, ?, ?, ?, ?, ?)", row).rowcount)

    # -- meta: what must survive a restart ----------------------------------------------------
    def _meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def _set_meta(self, key: str, value: str | None) -> None:
        with self._tx():
            if value is None:
                self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def history_missing(self) -> str | None:
        """Why this journal lacks its redemption history (None when it has it)."""
        return self._meta(META_HISTORY_MISSING)

    def mark_history_missing(self, why: str) -> None:
        self._set_meta(META_HISTORY_MISSING, why)

    def history_restored(self, how: str) -> None:
        """The redemption history is back: the gate may admit single-use passes again."""
        with self._tx():
            self.db.execute("DELETE FROM meta WHERE key = ?", (META_HISTORY_MISSING,))
            self._insert_event(EventKind.HISTORY_RESTORED, detail=how)

    def emergency_latched(self) -> bool:
        return self._meta(META_EMERGENCY_LATCHED) == "1"

    def set_emergency_latched(self, latched: bool) -> None:
        self._set_meta(META_EMERGENCY_LATCHED, "1" if latched else None)

    # -- reads --------------------------------------------------------------------------------
    def usage(self, pass_id: bytes) -> Usage:
        """Entries used and inside/exited state of one pass, across this and other gates (a scan
        asks this before every decision: a pass never seen, the usual case, costs a bit's test)."""
        seen = self._seen
        if seen is not None and seen.ready and not seen.might_have(pass_id):
            return UNUSED
        rows = self._read(USAGE_SQL, (pass_id.hex(),))
        if not rows:
            return UNUSED
        entries = [t for d, t in rows if d == Direction.ENTRY]
        return Usage(len(entries), rows[-1][0] == Direction.ENTRY,
                     any(d == Direction.EXIT for d, _ in rows), entries[-1] if entries else None,
                     tuple(entries))

    def catch_up(self) -> None:
        """Take in the redemptions another process wrote (``SeenPasses``); the gate's health check
        calls it every second. Raises ``JournalError``."""
        if self._seen is None:
            return
        try:
            self._seen.catch_up(self.db)
        except sqlite3.Error as exc:
            raise _cause(exc) from exc

    def check(self) -> None:
        """The cheap check at start: the roots of what the policy reads can be read. A full scan
        would cost seconds on a large journal with a cold cache, so SQLite's ``quick_check`` runs
        after READY, in the upkeep worker. Raises ``JournalDamaged``."""
        self._read("SELECT pass_id, t FROM redemptions INDEXED BY redemptions_pass LIMIT 1")
        self._read("SELECT state FROM redemptions NOT INDEXED LIMIT 1")
        self._read("SELECT redemption_id FROM redemptions INDEXED BY redemptions_reserved "
                   "WHERE state = 'reserved' LIMIT 1")
        self._read("SELECT value FROM meta LIMIT 1")

    def unsent(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` events not yet acknowledged by the hub."""
        return self._read_events("WHERE sent = 0 ORDER BY seq LIMIT ?", (limit,))

    def mark_sent(self, event_ids: Iterable[str]) -> None:
        ids = list(event_ids)
        with self._tx():
            self.db.executemany("UPDATE events SET sent = 1 WHERE event_id = ?", [(i,) for i in ids])

    def mark_rejected(self, event_ids: Iterable[str]) -> None:
        """Events the hub refused as malformed: kept for audit, never sent again (sent = 2)."""
        ids = list(event_ids)
        with self._tx():
            self.db.executemany("UPDATE events SET sent = 2 WHERE event_id = ?", [(i,) for i in ids])

    def backlog(self) -> int:
        return int(self._read("SELECT count(*) FROM events WHERE sent = 0")[0][0])

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All events, oldest first (for tests, the CLI and audits)."""
        if kind:
            return self._read_events("WHERE kind = ? ORDER BY seq", (str(kind),))
        return self._read_events("ORDER BY seq", ())

    # -- upkeep -------------------------------------------------------------------------------
    def purge(self, retention_days: float, *, keep_unsent: bool = True) -> int:
        """Delete events older than the retention (unsent ones are kept while a hub is configured),
        redemptions of passes expired longer ago than that, and redemptions older than that of passes
        whose validity the gate does not know (README "Privacy"). Returns events deleted."""
        deleted, _ = purge(self.db, self.write_lock, self.clock() - retention_days * 86400, keep_unsent,
                           wait_s=self.write_timeout_s, pause_s=0.0)
        return deleted

    def integrity_ok(self) -> bool:
        return bool(self._read("PRAGMA integrity_check")[0][0] == "ok")

    def close(self) -> None:
        self._closed = True
        if self._seen is not None:
            self._seen.close()
        if self._db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        self._db = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def unsent_count(path: str | Path) -> int:
    """Events not yet acknowledged by the hub, read on a connection of its own: the status page runs
    in other threads and must never touch the control loop's connection. Raises ``JournalError``."""
    try:
        with _connect_read_only(path) as db:
            return int(db.execute("SELECT count(*) FROM events WHERE sent = 0").fetchone()[0])
    except sqlite3.Error as exc:
        raise _cause(exc) from exc


def purge(db: sqlite3.Connection, lock: threading.Lock, cutoff: float, keep_unsent: bool, *,
          wait_s: float, pause_s: float = PURGE_PAUSE_S, max_chunks: int | None = None) -> tuple[int, bool]:
    """Delete old events, then the redemptions of passes expired before ``cutoff`` and those of
    passes of unknown validity (remote ones of another issuer's pass) made before it, in short
    transactions of ``PURGE_CHUNK`` rows, each under the control loop's write lock and followed by a
    pause, so a scan waits at most for one chunk. Stops after ``max_chunks``; returns (events
    deleted, finished)."""
    sent_clause = "AND sent != 0" if keep_unsent else ""
    statements = (
        f"DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE t < :cutoff {sent_clause} "
        f"LIMIT {PURGE_CHUNK})",
        # (a pass of unknown validity, another issuer's redeemed at another gate, goes by age)
        "DELETE FROM redemptions WHERE rowid IN (SELECT rowid FROM redemptions WHERE valid_until < :cutoff "
        f"OR (valid_until IS NULL AND t < :cutoff) LIMIT {PURGE_CHUNK})",
    )
    deleted = chunks = 0
    for n, statement in enumerate(statements):
        while True:
            if max_chunks is not None and chunks >= max_chunks:
                return deleted, False
            chunks += 1
            with _transaction(db, lock, wait_s):
                count = db.execute(statement, {"cutoff": cutoff}).rowcount
            if n == 0:
                deleted += count
            if count < PURGE_CHUNK:
                break
            if pause_s:
                time.sleep(pause_s)
    return deleted, True


def quick_check(path: str | Path) -> str | None:
    """SQLite's ``quick_check`` on a connection of its own: None when the file is sound, else the
    damage found (takes seconds on a large journal: run it off the scan path). Raises
    ``JournalError`` when the check itself could not run (locked, an I/O error)."""
    try:
        with _connect_read_only(path) as db:
            result = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.Error as exc:
        error = _cause(exc)
        if isinstance(error, JournalDamaged):
            return str(error)
        raise error from exc
    return None if result == "ok" else f"journal damaged: {result}"


def open_journal(path: Path, gate_id: str, *, aside_dir: Path, clock: Callable[[], float] = time.time,
                 write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
                 damaged_marker: Path | None = None) -> Journal:
    """The control loop's journal. A damaged one (it cannot be opened, its redemptions cannot be
    read, or the upkeep's check left ``damaged_marker``) is moved into ``aside_dir`` with its WAL,
    kept for evidence, and a new journal starts marked as missing its redemption history: never a
    crash loop, never a gate that forgets which single-use passes were used."""
    if damaged_marker is not None and damaged_marker.exists():
        why = damaged_marker.read_text(errors="replace").strip() or "journal damaged"
    else:
        try:
            journal = Journal(path, gate_id, clock=clock, write_timeout_s=write_timeout_s, defer_errors=True)
        except JournalDamaged as exc:
            why = str(exc)
        else:
            damage = _damage(journal)
            if damage is None:
                return journal
            why = damage
    aside = set_aside(path, aside_dir, clock())
    log.error("%s: set aside as %s; a new journal starts without the redemption history", why, aside)
    if damaged_marker is not None:
        damaged_marker.unlink(missing_ok=True)
    journal = Journal(path, gate_id, clock=clock, write_timeout_s=write_timeout_s)
    journal.mark_history_missing(f"{why}; set aside as {aside.name}")
    journal.record(EventKind.JOURNAL_SET_ASIDE, detail=f"{why}; set aside as {aside}")
    return journal


def _damage(journal: Journal) -> str | None:
    """Why an opened journal is damaged (it is closed then), else None: sound, or not readable now
    (not open yet, locked: a fault the gate shows and retries, not damage)."""
    try:
        journal.check()
    except JournalDamaged as exc:
        journal.close()  # before its files move: the last connection to close deletes the WAL by name
        return str(exc)
    except JournalError:
        pass
    return None


def set_aside(path: Path, aside_dir: Path, now: float) -> Path:
    """Move a journal and its WAL and shared-memory files into ``aside_dir``; returns the new path."""
    aside_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    target = aside_dir / f"{path.stem}-{stamp}{path.suffix}"
    n = 1
    while target.exists():
        n += 1
        target = aside_dir / f"{path.stem}-{stamp}-{n}{path.suffix}"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{target}{suffix}"))
    return target


def salvage(damaged: Path, journal: Journal) -> tuple[int, int]:
    """Copy every redemption still readable in a set-aside journal into ``journal`` (reserved ones
    count as used); returns (copied, unreadable rows or pages skipped)."""
    try:
        source = _connect_read_only(damaged)
    except sqlite3.Error:
        return 0, 1
    copied = 0
    with source as db:
        rowids, complete = _readable(db, "SELECT rowid FROM redemptions ORDER BY rowid")
        skipped = 0 if complete else 1  # the rows after the damage, as one
        for (rowid,) in rowids:
            try:
                row = db.execute("SELECT redemption_id, pass_id, gate_id, direction, t, state, valid_until "
                                 "FROM redemptions WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.Error:
                skipped += 1
                continue
            rid, pass_id, gate_id, direction, t, state, valid_until = row
            state = "assumed" if state == "reserved" else state
            with journal._tx():
                copied += journal._insert_redemption("INSERT OR IGNORE", (rid, pass_id, gate_id, direction, t,
                                                                          state, valid_until))
    return copied, skipped


def _readable(db: sqlite3.Connection, sql: str) -> tuple[list[Any], bool]:
    """Rows of ``sql`` as far as they can be read (a damaged page ends the list early), and whether
    that was all of them."""
    rows: list[Any] = []
    try:
        for row in db.execute(sql):
            rows.append(row)
    except sqlite3.Error:
        return rows, False
    return rows, True
