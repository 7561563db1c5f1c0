"""The gate's journal: every decision and every redemption, in SQLite, durable.

WAL mode with ``synchronous=FULL``: a reservation is on disk before the relay is pulsed and a
passage is on disk before it counts, so a power cut loses nothing the gate acted on. On open,
a reservation left behind by a crash is counted as used ("assumed"): the holder may have walked
through, and a single-use pass must never admit twice.

Entries used and anti-passback state are read from here, so a restart forgets nothing. The
``events`` table doubles as the sync outbox (``sent``: 0 queued, 1 acknowledged by the hub, 2 refused
by the hub as malformed and kept only for audit). Pass ids are stored as hex; the journal
holds no personal data.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .policy import Decision, Direction, Usage

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
    sent INTEGER NOT NULL DEFAULT 0
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
"""

EVENT_FIELDS = ("event_id", "gate_id", "t", "kind", "direction", "pass_id", "decision", "reason",
                "latency_ms", "detail")
COUNTED = ("reserved", "committed", "assumed")
CHECKPOINT_EVERY_S = 2.0
PURGE_EVERY_S = 6 * 3600.0
PURGE_CHUNK = 1000  # rows a transaction: a long delete would block the control loop's writes


class Journal:
    """One gate's journal; use from one thread (the control loop). Readers open their own.

    >>> j = Journal(":memory:", gate_id="g1")
    >>> j.usage(bytes(16)).entries_used
    0
    """

    def __init__(self, path: str | Path, gate_id: str, *, clock: Callable[[], float] = time.time,
                 recover: bool = True, background_checkpoint: bool = False,
                 retention: tuple[float, bool] | None = None) -> None:
        """``recover=False`` for a second connection (sync worker, status page): only the control
        loop's own connection may turn a crash's leftover reservations into used entries.

        ``background_checkpoint``: the control loop's connection never checkpoints the WAL itself
        (SQLite's auto-checkpoint fsyncs the database inside a commit and measured 30-80 ms
        stalls on the scan path); a thread with its own connection does passive checkpoints and,
        given ``retention`` = (days, keep_unsent), purges every few hours while the gate runs."""
        self.path = str(path)
        self.gate_id = gate_id
        self.clock = clock
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.recovered = self._recover() if recover else 0
        self._checkpointer: _Checkpointer | None = None
        if background_checkpoint and self.path != ":memory:":
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(self.path, clock, retention)
            self._checkpointer.start()

    def _recover(self) -> int:
        """Count reservations left by a crash as used; returns how many there were."""
        with self._tx():
            rows = self.db.execute(
                "SELECT redemption_id, pass_id, direction FROM redemptions WHERE state = 'reserved'"
            ).fetchall()
            for rid, pass_id, direction in rows:
                self.db.execute("UPDATE redemptions SET state = 'assumed' WHERE redemption_id = ?", (rid,))
                self._insert_event("reservation_assumed", direction=direction, pass_id=pass_id,
                                   detail="reserved before a restart: counted as used")
        return len(rows)

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *_: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> Journal._Tx:
        return Journal._Tx(self.db)

    def _insert_event(self, kind: str, **fields: Any) -> str:
        event_id = uuid.uuid4().hex
        row = {"event_id": event_id, "gate_id": self.gate_id, "t": self.clock(), "kind": kind, **fields}
        self.db.execute(
            f"INSERT INTO events({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        return event_id

    # -- the control loop's writes ------------------------------------------------------------
    def record_decision(self, decision: Decision, latency_ms: float, *, reserve: bool = False) -> str | None:
        """Journal a decision; with ``reserve``, also reserve its redemption in the same durable
        transaction and return the redemption id."""
        pass_id = decision.pass_id.hex() if decision.pass_id else None
        with self._tx():
            self._insert_event(
                "decision", direction=str(decision.direction), pass_id=pass_id,
                decision=decision.verdict, reason=str(decision.reason), latency_ms=latency_ms,
                detail=decision.text,
            )
            if not (reserve and pass_id):
                return None
            rid = uuid.uuid4().hex
            valid_until = decision.pass_.valid_until if decision.pass_ else None
            self.db.execute(
                "INSERT INTO redemptions VALUES (?, ?, ?, ?, ?, 'reserved', ?)",
                (rid, pass_id, self.gate_id, str(decision.direction), self.clock(), valid_until),
            )
            return rid

    def commit(self, redemption_id: str) -> None:
        """The holder walked through: the redemption counts (durably, before this returns)."""
        self._finish(redemption_id, "committed", "redeemed")

    def release(self, redemption_id: str) -> None:
        """The holder did not walk through: the entry is given back."""
        self._finish(redemption_id, "released", "released")

    def _finish(self, redemption_id: str, state: str, kind: str) -> None:
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

    def record(self, kind: str, *, direction: str | None = None, detail: str = "",
               pass_id: str | None = None) -> str:
        """Journal any other event (passage, forced_passage, tamper, state change, …)."""
        with self._tx():
            return self._insert_event(kind, direction=direction, detail=detail, pass_id=pass_id)

    def add_remote_redemption(self, redemption_id: str, pass_id: str, gate_id: str, direction: str,
                              t: float, valid_until: float | None = None) -> bool:
        """A redemption made at another gate of the venue (from the hub); idempotent."""
        with self._tx():
            cur = self.db.execute(
                "INSERT OR IGNORE INTO redemptions VALUES (?, ?, ?, ?, ?, 'committed', ?)",
                (redemption_id, pass_id, gate_id, direction, t, valid_until),
            )
        return cur.rowcount == 1

    # -- reads --------------------------------------------------------------------------------
    def usage(self, pass_id: bytes) -> Usage:
        """Entries used and inside/exited state of one pass, across this and other gates."""
        rows = self.db.execute(
            "SELECT direction, t FROM redemptions WHERE pass_id = ? AND state IN (?, ?, ?) ORDER BY t",
            (pass_id.hex(), *COUNTED),
        ).fetchall()
        entries = [t for d, t in rows if d == Direction.ENTRY]
        return Usage(
            entries_used=len(entries),
            inside=bool(rows) and rows[-1][0] == Direction.ENTRY,
            exited=any(d == Direction.EXIT for d, _ in rows),
            last_entry_t=entries[-1] if entries else None,
        )

    def unsent(self, limit: int = 500) -> list[dict[str, Any]]:
        """The oldest events not yet acknowledged by the hub."""
        cur = self.db.execute(
            f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE sent = 0 ORDER BY seq LIMIT ?", (limit,)
        )
        return [dict(zip(EVENT_FIELDS, row, strict=True)) for row in cur]

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
        return self.db.execute("SELECT count(*) FROM events WHERE sent = 0").fetchone()[0]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All events, oldest first (for tests, the CLI and audits)."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        cur = self.db.execute(f"SELECT {', '.join(EVENT_FIELDS)} FROM events {where} ORDER BY seq", args)
        return [dict(zip(EVENT_FIELDS, row, strict=True)) for row in cur]

    # -- upkeep -------------------------------------------------------------------------------
    def purge(self, retention_days: float, *, keep_unsent: bool = True) -> int:
        """Delete events older than the retention (unsent ones are kept while a hub is configured)
        and redemptions of passes expired longer ago than that. Returns events deleted."""
        return _purge(self.db, self.clock() - retention_days * 86400, keep_unsent)

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def unsent_count(path: str | Path) -> int:
    """Events not yet acknowledged by the hub, read on a connection of its own: the status page runs
    in other threads and must never touch the control loop's connection."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT count(*) FROM events WHERE sent = 0").fetchone()[0]
    finally:
        db.close()


def _purge(db: sqlite3.Connection, cutoff: float, keep_unsent: bool) -> int:
    """Delete old events in short transactions of PURGE_CHUNK rows, then the redemptions of passes
    expired before ``cutoff``; returns the events deleted."""
    sent_clause = "AND sent != 0" if keep_unsent else ""
    deleted = 0
    while True:
        db.execute("BEGIN IMMEDIATE")
        cur = db.execute(f"DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE t < ? "
                         f"{sent_clause} LIMIT {PURGE_CHUNK})", (cutoff,))
        db.execute("COMMIT")
        deleted += cur.rowcount
        if cur.rowcount < PURGE_CHUNK:
            break
    db.execute("DELETE FROM redemptions WHERE valid_until IS NOT NULL AND valid_until < ?", (cutoff,))
    return deleted


class _Checkpointer(threading.Thread):
    """Upkeep off the control loop: passive WAL checkpoints (they never block its writes) and the
    periodic retention purge, on a connection of its own."""

    def __init__(self, path: str, clock: Callable[[], float], retention: tuple[float, bool] | None) -> None:
        super().__init__(name="journal-upkeep", daemon=True)
        self.path = path
        self.clock = clock
        self.retention = retention
        self._stopping = threading.Event()

    def run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        last_purge = time.monotonic()  # the daemon purges at start
        try:
            while not self._stopping.wait(CHECKPOINT_EVERY_S):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                if self.retention and time.monotonic() - last_purge >= PURGE_EVERY_S:
                    last_purge = time.monotonic()
                    days, keep_unsent = self.retention
                    _purge(db, self.clock() - days * 86400, keep_unsent)
        finally:
            db.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)
