"""Which passes the gate's journal may hold a redemption of, told without asking SQLite.

The scan that matters most is a pass seen for the first time, and its usage lookup in SQLite costs
15-20 µs right after a signature check has taken the CPU's caches (7 µs warm): as much as the rest
of the decision. ``SeenPasses`` keeps one bit per value of a pass id's last 24 bits (2 MiB): a clear
bit proves the journal holds no redemption of the pass, so the lookup is skipped; a set bit (a pass
redeemed before, or another sharing its bits: 6 % of unused passes at 1 M redeemed) asks SQLite as
before. Bits are only ever set, never cleared, so no race between threads can lose one; a pass whose
rows were purged keeps its bit until the gate restarts, which costs only a lookup.

What keeps a clear bit true:

- every redemption written in this process marks its bit before its row commits (``mark``): the
  journals of one file share their filters (``for_path``), so the sync worker's remote redemptions
  reach the control loop's filter;
- rows another process wrote (``passgated journal recover``) are taken in by ``catch_up``, which the
  gate's health check calls every second before it reads whether the history came back (so a gate in
  FAULT for a missing history counts them before it admits again): SQLite's ``data_version`` says
  another connection committed, and the rows added since are those after the last row read
  (``rowid``) as long as that row is still there under the same redemption id (while it is, no new
  row can be given a lower rowid); one statement reads that row and the rows after it, so both come
  from one snapshot. When the row is gone, everything is read again;
- until the filter has read the whole table (``ready``), every lookup asks SQLite: a large journal is
  read by a thread of its own after start (about a second for 1 M redemptions), so the gate's start
  does not wait for it; a small one is read at once.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("passgated.journal")

BITS = 24
TAIL = BITS // 4  # hex digits of a pass id that pick its bit (the last ones)
CHUNK = 65536  # rows read at a time: a few MB of Python objects at most
AT_ONCE = 20_000  # rows (by the largest rowid) read while the journal opens; more in a thread
_HEX_DIGIT = np.full(128, -1, dtype=np.int64)  # a character's value as a hex digit, -1 for none
for _value, _chars in enumerate(zip("0123456789abcdef", "0123456789ABCDEF", strict=True)):
    _HEX_DIGIT[[ord(c) for c in _chars]] = _value
_HEX_SHIFTS = np.arange(TAIL - 1, -1, -1, dtype=np.int64) * 4
ROWS_SQL = (f"SELECT rowid, redemption_id, substr('{'0' * TAIL}' || pass_id, -{TAIL}) FROM redemptions "
            "WHERE rowid >= ? ORDER BY rowid")

_BY_PATH: dict[str, weakref.WeakSet[SeenPasses]] = {}
_BY_PATH_LOCK = threading.Lock()


def for_path(key: str) -> list[SeenPasses]:
    """The filters of the journals open on one file in this process."""
    with _BY_PATH_LOCK:
        return list(_BY_PATH.get(key, ()))


class SeenPasses:
    """The filter of one journal file, for the control loop's journal (which reads usage)."""

    def __init__(self, key: str) -> None:
        self._bits = bytearray(1 << (BITS - 3))
        self._lock = threading.Lock()  # writers only: |= on a byte from two threads could lose a bit
        self._data_version: int | None = None
        self._last: tuple[int, str] | None = None  # (rowid, redemption_id) of the last row read
        self.ready = False  # the whole table has been read: a clear bit may be trusted
        self._connect: Callable[[], Any] | None = None
        self._reader: threading.Thread | None = None
        self._read_all = False  # the reader thread read every row: catch_up goes on from its last
        self._closed = threading.Event()
        with _BY_PATH_LOCK:
            _BY_PATH.setdefault(key, weakref.WeakSet()).add(self)

    def might_have(self, pass_id: bytes) -> bool:
        i = int.from_bytes(pass_id[-3:], "big")
        return bool(self._bits[i >> 3] >> (i & 7) & 1)

    def mark(self, pass_id_hex: str) -> None:
        try:
            i = int(pass_id_hex[-TAIL:] or "0", 16)
        except ValueError:  # not hex: no scan's pass_id.hex() can ever match it
            return
        with self._lock:
            self._bits[i >> 3] |= 1 << (i & 7)

    def _mark_tails(self, tails: list[str]) -> None:
        """Mark many passes by their ids' last hex digits, zero-padded to ``TAIL``, in arrays."""
        codes = np.array(tails, dtype=f"U{TAIL}").view(np.uint32).reshape(len(tails), TAIL)
        digits = _HEX_DIGIT[np.minimum(codes, len(_HEX_DIGIT) - 1)]
        numbers = (digits << _HEX_SHIFTS).sum(axis=1)[(digits >= 0).all(axis=1)]  # not hex: never matches
        with self._lock:
            np.bitwise_or.at(np.frombuffer(self._bits, dtype=np.uint8), numbers >> 3,
                             np.left_shift(1, numbers & 7).astype(np.uint8))

    # -- reading the table --------------------------------------------------------------------
    def start(self, db: sqlite3.Connection, connect: Callable[[], Any] | None) -> None:
        """At the journal's open (``db``, its connection): a small table is read now, a large one by
        a thread with a connection of its own (``connect``; None for a journal in memory)."""
        self._connect = connect
        self._read_again(db)

    def _read_again(self, db: sqlite3.Connection) -> None:
        self.ready = False
        self._last = None
        largest = db.execute("SELECT max(rowid) FROM redemptions").fetchone()[0] or 0
        if largest <= AT_ONCE or self._connect is None:
            self._take_in(db)
        else:
            self._start_reader()

    def _start_reader(self) -> None:
        self._read_all = False
        self._reader = threading.Thread(target=self._read_in_thread, name="journal-seen", daemon=True)
        self._reader.start()

    def _read_in_thread(self) -> None:
        assert self._connect is not None
        try:
            with self._connect() as db:
                self._read_from(db, None)
        except (sqlite3.Error, OSError) as exc:  # catch_up starts another; lookups ask SQLite meanwhile
            log.warning("journal: reading the redemptions for the usage filter failed (%s)", exc)
            return
        self._read_all = not self._closed.is_set()

    def catch_up(self, db: sqlite3.Connection) -> int:
        """Take in rows other connections added (``db``: the loop's connection); returns how many
        rows were read."""
        if not self.ready:
            if self._reader is not None and self._reader.is_alive():
                return 0
            if not self._read_all:  # the reader failed: once more
                self._start_reader()
                return 0
            self._reader = None
            return self._take_in(db)
        if db.execute("PRAGMA data_version").fetchone()[0] == self._data_version:
            return 0
        return self._take_in(db)

    def _take_in(self, db: sqlite3.Connection) -> int:
        """The rows after the last one read; ready when done (the data version read first, so a
        commit meanwhile shows at the next call)."""
        data_version = db.execute("PRAGMA data_version").fetchone()[0]
        read = self._read_from(db, self._last)
        if read < 0:  # the last row read is gone (deleted, its rowid reused): all of them again
            self._read_again(db)
            return 0
        self._data_version = data_version
        self.ready = True
        return read

    def _read_from(self, db: sqlite3.Connection, last: tuple[int, str] | None) -> int:
        """Mark the rows after ``last`` (all rows for None); -1 when ``last`` is no longer there."""
        cursor = db.execute(ROWS_SQL, (last[0] if last is not None else 0,))
        with contextlib.closing(cursor):
            rows = cursor.fetchmany(CHUNK)
            if last is not None:
                if not rows or rows[0][:2] != last:
                    return -1
                rows = rows[1:]
            read = 0
            while rows and not self._closed.is_set():
                self._mark_tails([tail for _, _, tail in rows])
                self._last = rows[-1][0], rows[-1][1]
                read += len(rows)
                rows = cursor.fetchmany(CHUNK)
        return read

    def close(self) -> None:
        """The journal closes: a reader thread stops at its next chunk."""
        self._closed.set()
        self.ready = False
