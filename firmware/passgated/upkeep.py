"""Journal upkeep, off the scan path and on a connection of its own (run by a ``Worker``).

- Passive WAL checkpoints every two seconds (they never block the control loop's writes; SQLite's
  automatic checkpoint inside a commit once stalled scans by 30-80 ms).
- The retention purge: once after start (never before READY: on a large journal it takes minutes)
  and every six hours, a few chunks at a time with a checkpoint between.
- SQLite's ``quick_check`` once after start (seconds on a large journal, so not at boot): a damaged
  journal leaves a marker that puts the gate out of service until a restart sets the file aside.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from .journal import Journal, purge, quick_check

log = logging.getLogger("passgated.journal")
CHECKPOINT_EVERY_S = 2.0
PURGE_EVERY_S = 6 * 3600.0
CHUNKS_A_STEP = 200  # then a checkpoint, so a long purge never lets the WAL grow without bound


class JournalUpkeep:
    """One step of upkeep a call; ``step()`` returns how long to wait before the next."""

    def __init__(self, journal: Journal, *, retention_days: float, keep_unsent: bool, damaged_marker: Path,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.retention_days = retention_days
        self.keep_unsent = keep_unsent
        self.damaged_marker = damaged_marker
        self.clock = clock
        self.monotonic = monotonic
        self.checked = False
        self.purged = 0  # events deleted since start
        self._db: sqlite3.Connection | None = None
        self._next_purge = monotonic()  # the first purge right after start
        self._purging = False

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            # SQLite's busy wait has the control loop's bound: a chunk waiting for another process's
            # lock holds the loop's write lock meanwhile (the purge goes on at the next step).
            db = sqlite3.connect(self.journal.path, isolation_level=None,
                                 timeout=self.journal.write_timeout_s, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")  # deletions: losing one to a power cut is harmless
            db.execute("PRAGMA wal_autocheckpoint=0")
            self._db = db
        return self._db

    def step(self) -> float:
        try:
            return self._step()
        except Exception:
            self.close()  # a fresh connection next time
            raise

    def _step(self) -> float:
        if not self.checked:
            problem = quick_check(self.journal.path)  # raises when it cannot run: tried again later
            self.checked = True
            if problem is not None:
                log.error("%s: the gate stays out of service; a restart sets the journal aside", problem)
                self.damaged_marker.write_text(problem + "\n")
                return CHECKPOINT_EVERY_S
        db = self._connection()
        if self._purging or self.monotonic() >= self._next_purge:
            self._purging = True
            cutoff = self.clock() - self.retention_days * 86400
            deleted, finished = purge(db, self.journal.write_lock, cutoff, self.keep_unsent,
                                      wait_s=self.journal.write_timeout_s, max_chunks=CHUNKS_A_STEP)
            self.purged += deleted
            if finished:
                self._purging = False
                self._next_purge = self.monotonic() + PURGE_EVERY_S
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return 0.0 if self._purging else CHECKPOINT_EVERY_S

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
