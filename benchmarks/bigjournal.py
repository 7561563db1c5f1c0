"""A large gate journal for the benchmarks: N passages (decision, redemption, passage) spread over the
days before now, written in bulk with the gate's own schema.

    python benchmarks/bigjournal.py OUT.db [--passages 1000000] [--days 40]

Imported by ``gate_latency.py`` and ``boot.py``; a journal is reused when it already exists.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from pathlib import Path

from passgated.journal import SCHEMA

BATCH = 20_000


def make_journal(path: Path, passages: int, *, days: float = 40.0, gate_id: str = "gate-1") -> Path:
    """Write ``passages`` passages evenly over the last ``days`` days (all sent to a hub, so a purge
    may delete the old ones); returns ``path``."""
    if path.exists():
        return path
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    db = sqlite3.connect(partial, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.executescript(SCHEMA)
    start = time.time() - days * 86400
    step = days * 86400 / max(passages, 1)
    events: list[tuple[object, ...]] = []
    redemptions: list[tuple[object, ...]] = []
    db.execute("BEGIN")
    for i in range(passages):
        t = start + i * step
        pass_id, rid = os.urandom(16).hex(), os.urandom(16).hex()
        events += [
            (os.urandom(16).hex(), gate_id, t, "decision", "entry", pass_id, "admit", "admit", 0.5,
             "Welcome", 1),
            (os.urandom(16).hex(), gate_id, t, "redeemed", "entry", pass_id, None, None, None, rid, 1),
            (os.urandom(16).hex(), gate_id, t, "passage", "entry", None, None, None, None, "", 1),
        ]
        redemptions.append((rid, pass_id, gate_id, "entry", t, "committed", t + 3600))
        if len(redemptions) >= BATCH or i == passages - 1:
            db.executemany("INSERT INTO events(event_id, gate_id, t, kind, direction, pass_id, decision, "
                           "reason, latency_ms, detail, sent) VALUES (?,?,?,?,?,?,?,?,?,?,?)", events)
            db.executemany("INSERT INTO redemptions VALUES (?,?,?,?,?,?,?)", redemptions)
            events, redemptions = [], []
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    partial.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=40.0)
    args = parser.parse_args()
    started = time.perf_counter()
    make_journal(args.out, args.passages, days=args.days)
    print(f"{args.out}: {args.passages} passages, {args.out.stat().st_size / 1e6:.0f} MB, "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
