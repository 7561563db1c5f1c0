"""Retention: what the hub forgets, and when (README "Privacy" states it; tests/test_privacy_claims.py
holds the two together).

Per venue (``Venue.retention_days``, ``Venue.window_hours``), by the hub's clock at receipt
(``received_at``: the only time the hub vouches for, and a late upload still gets the whole window
to reach the other gates):

- after the operational window, pass ids go: events and alerts keep their row without it. A pass
  the hub issued keeps the ids of its redemptions and admit decisions while it is valid
  (``valid_until`` plus the gates' largest clock skew): the gates' single-use and anti-passback
  checks, a gate fetching its history again and the double-redemption alerts need them. A pass the
  hub has no record of (another issuer's) keeps them only for the window.
- after the retention, events and alerts are deleted (again except a still-valid issued pass's
  redemptions and admits), and so are the entries per minute (``EntryMinute``) of minutes that
  long ago. The passage totals (``PassageTotal``) stay: ingest counted every passage when it
  stored it, so the counts stay right. A pass record (``IssuedPass``) goes ``retention_days``
  after its ``valid_until``.
- the audit log (operators' names and addresses: people too) is deleted ``AUDIT_RETENTION_DAYS``
  after each entry, a venue's with the venue's purge and the hub-wide entries under ``HUB_WIDE``.
- two rows stay until a newer one comes (without pass id past the window): the venue's newest
  redemption, whose position tells the redemption route a gate's cursor from one of a hub
  restored from a backup; and on SQLite the hub's newest event, whose ``seq`` keeps SQLite from
  numbering new rows (and positions, ``ingest._store``) below the cursors gates hold.

The work is done in chunks of ``CHUNK`` rows, each its own short transaction (``purge``); the
running hub does a bounded number of chunks a round (``Purger``), and ``passgate-hub purge`` all of
them. Only one purging transaction runs at a time across the hub's processes (``_lock``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select, text, tuple_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from passgate import wire

from . import audit
from .db import describe_error
from .models import (
    DEFAULT_RETENTION_DAYS,
    DEFAULT_WINDOW_HOURS,
    REDEMPTION_KINDS,
    Alert,
    AuditEntry,
    ConsoleSession,
    EntryMinute,
    Event,
    IssuedPass,
    Venue,
)

__all__ = ["AUDIT_RETENTION_DAYS", "DEFAULT_RETENTION_DAYS", "DEFAULT_WINDOW_HOURS", "HUB_WIDE", "Purged",
           "Purger", "purge"]

log = logging.getLogger(__name__)
DAY_S = 86400.0
RETENTION_DAYS = (1, 3660)  # bounds of a venue's retention_days
WINDOW_HOURS = (1, 8784)  # bounds of a venue's window_hours (a year)
# Who changed what stays long enough to look back over a year's seasons, then goes.
AUDIT_RETENTION_DAYS = 400
HUB_WIDE = "(hub-wide)"  # ``purge``'s key for what belongs to no venue (not a venue name: no parentheses)
# A gate admits a pass up to its clock skew setting past ``valid_until``: the largest one allowed.
VALIDITY_GRACE_S = float(wire.bounds(wire.GateSettings, "skew_seconds")["le"])
CHUNK = 500  # rows a transaction: milliseconds, so ingest never waits long behind one
CHUNKS_A_ROUND = 40  # the running hub's bound per round (20,000 rows)
PURGE_EVERY_S = 300.0  # between rounds of the running hub (a round that did not finish: at once)
_ADMIT = (Event.kind == str(wire.EventKind.DECISION)) & (Event.decision == str(wire.Verdict.ADMIT))
# In PostgreSQL's two-key advisory lock space: apart from the one-key locks ingest takes per pass.
_PG_PURGE_LOCK = text("SELECT pg_try_advisory_xact_lock(1885824116, 1)")


@dataclasses.dataclass
class Purged:
    """What one venue's purge removed."""

    pass_ids_removed: int = 0  # events that lost their pass id
    events_deleted: int = 0
    minutes_deleted: int = 0  # rows of entries per minute
    alert_pass_ids_removed: int = 0
    alerts_deleted: int = 0
    passes_deleted: int = 0  # records of issued passes
    audit_deleted: int = 0  # audit log entries
    sessions_deleted: int = 0  # console sessions that ended (hub-wide only)

    def __bool__(self) -> bool:
        return any(dataclasses.astuple(self))


def _kept(venue_id: int, now: float) -> ColumnElement[bool]:
    """An event whose pass id the gates may still need: a redemption or an admit of a pass the
    hub issued that is still valid."""
    valid = exists().where(IssuedPass.pass_id == Event.pass_id, IssuedPass.venue_id == venue_id,
                           IssuedPass.valid_until >= now - VALIDITY_GRACE_S)
    return (Event.kind.in_(REDEMPTION_KINDS) | _ADMIT) & valid


def _remove_pass_ids(db: Session, venue: Venue, now: float, limit: int) -> int:
    cutoff = now - venue.window_hours * 3600.0
    chosen = (select(Event.seq).where(Event.venue_id == venue.id, Event.received_at < cutoff,
                                      Event.pass_id.is_not(None), ~_kept(venue.id, now))
              .order_by(Event.received_at).limit(limit))
    done = db.execute(update(Event).where(Event.seq.in_(chosen.scalar_subquery())).values(pass_id=None)
                      .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


def _newest(db: Session, venue: Venue) -> list[int]:
    """The rows the purge leaves as marks (see the module's text)."""
    marks = [db.scalar(select(Event.seq).where(Event.venue_id == venue.id, Event.kind.in_(REDEMPTION_KINDS))
                       .order_by(Event.pos.desc(), Event.seq.desc()).limit(1))]
    if db.get_bind().dialect.name == "sqlite":
        marks.append(db.scalar(select(func.max(Event.seq))))
    return [seq for seq in marks if seq is not None]


def _delete_events(db: Session, venue: Venue, now: float, limit: int) -> int:
    """Delete a chunk of the venue's events past retention (their passages stay counted in
    ``PassageTotal``, where ingest counted them)."""
    cutoff = now - venue.retention_days * DAY_S
    chosen = (select(Event.seq).where(Event.venue_id == venue.id, Event.received_at < cutoff,
                                      ~_kept(venue.id, now), Event.seq.not_in(_newest(db, venue)))
              .order_by(Event.received_at).limit(limit))
    done = db.execute(delete(Event).where(Event.seq.in_(chosen.scalar_subquery()))
                      .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


def _delete_minutes(db: Session, venue: Venue, now: float, limit: int) -> int:
    """Entries per minute of minutes past the venue's retention."""
    cutoff = int((now - venue.retention_days * DAY_S) // 60)
    chosen = (select(EntryMinute.minute, EntryMinute.shard)
              .where(EntryMinute.venue_id == venue.id, EntryMinute.minute < cutoff)
              .order_by(EntryMinute.minute).limit(limit))
    done = db.execute(delete(EntryMinute)
                      .where(EntryMinute.venue_id == venue.id,
                             tuple_(EntryMinute.minute, EntryMinute.shard).in_(chosen))
                      .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


def _remove_alert_pass_ids(db: Session, venue: Venue, now: float, limit: int) -> int:
    cutoff = now - venue.window_hours * 3600.0
    chosen = (select(Alert.id).where(Alert.venue_id == venue.id, Alert.created_at < cutoff,
                                     Alert.pass_id.is_not(None)).order_by(Alert.id).limit(limit))
    done = db.execute(update(Alert).where(Alert.id.in_(chosen.scalar_subquery())).values(pass_id=None)
                      .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


def _delete_alerts(db: Session, venue: Venue, now: float, limit: int) -> int:
    cutoff = now - venue.retention_days * DAY_S
    chosen = (select(Alert.id).where(Alert.venue_id == venue.id, Alert.created_at < cutoff)
              .order_by(Alert.id).limit(limit))
    done = db.execute(delete(Alert).where(Alert.id.in_(chosen.scalar_subquery()))
                      .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


def _delete_passes(db: Session, venue: Venue, now: float, limit: int) -> int:
    cutoff = now - venue.retention_days * DAY_S
    chosen = (select(IssuedPass.pass_id).where(IssuedPass.venue_id == venue.id,
                                               IssuedPass.valid_until < cutoff).limit(limit))
    done = db.execute(delete(IssuedPass).where(IssuedPass.pass_id.in_(chosen.scalar_subquery()))
                      .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


def _delete_audit(db: Session, venue: Venue | None, now: float, limit: int) -> int:
    """Audit entries older than ``AUDIT_RETENTION_DAYS``: the venue's, or (None) the hub-wide ones."""
    of = AuditEntry.venue_id.is_(None) if venue is None else AuditEntry.venue_id == venue.id
    chosen = (select(AuditEntry.id).where(of, AuditEntry.at < now - AUDIT_RETENTION_DAYS * DAY_S)
              .order_by(AuditEntry.id).limit(limit))
    done = db.execute(delete(AuditEntry).where(AuditEntry.id.in_(chosen.scalar_subquery()))
                      .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


def _delete_sessions(db: Session, venue: None, now: float, limit: int) -> int:
    """Console sessions that ended (expired, or idle past ``console.IDLE_S``) but were never used
    again to be deleted on the spot."""
    from .console import IDLE_S  # (the console imports the hub's modules; not the other way at import)

    ended = (ConsoleSession.expires_at <= now) | (ConsoleSession.last_seen_at <= now - IDLE_S)
    chosen = select(ConsoleSession.id).where(ended).order_by(ConsoleSession.id).limit(limit)
    done = db.execute(delete(ConsoleSession).where(ConsoleSession.id.in_(chosen.scalar_subquery()))
                      .execution_options(synchronize_session=False))
    return int(done.rowcount)  # type: ignore[attr-defined]


Step = Callable[[Session, Any, float, int], Any]


def _steps(purged: Purged, venue: Venue | None) -> list[tuple[Step, Callable[[Any], int]]]:
    """The purge's steps in order, each with how it adds its chunk's result to ``purged`` (and
    returns the rows it touched: a chunk short of ``CHUNK`` ends the step). Pass ids go first, so
    the rows deleted afterwards never held one longer than the window. (No venue: the hub-wide
    audit entries alone.)"""

    def add(field: str) -> Callable[[int], int]:
        def to(n: int) -> int:
            setattr(purged, field, getattr(purged, field) + n)
            return n
        return to

    if venue is None:
        return [(_delete_audit, add("audit_deleted")), (_delete_sessions, add("sessions_deleted"))]
    return [(_remove_pass_ids, add("pass_ids_removed")),
            (_remove_alert_pass_ids, add("alert_pass_ids_removed")),
            (_delete_events, add("events_deleted")), (_delete_minutes, add("minutes_deleted")),
            (_delete_alerts, add("alerts_deleted")),
            (_delete_passes, add("passes_deleted")), (_delete_audit, add("audit_deleted"))]


@dataclasses.dataclass
class Resume:
    """Where a bounded purge of every venue stopped (a venue's name; None: from the first), so
    the next one goes on from there to the last: every venue gets its turn, however many there
    are. (Restarted from the first venue, a round's bound was spent on the first few, each step's
    empty chunk counted, and the venues after them were never purged.)"""

    venue: str | None = None
    step: int = 0  # of the venue's steps (``_steps``), those before it done


def purge(db: Session, *, now: float | None = None, venue: str | None = None, dry_run: bool = False,
          max_chunks: int | None = None, resume: Resume | None = None) -> tuple[dict[str, Purged], bool]:
    """Purge every venue (or one) as its settings say, a chunk a transaction (committed on
    ``db``; with ``dry_run`` all in one transaction, rolled back: what a purge would remove).
    Stops after ``max_chunks``, noting in ``resume`` where (and goes on from there, if it names
    a venue). Returns what went, per venue (and, purging every venue, what belonged to none under
    ``HUB_WIDE``), and whether all that was due went."""
    now = time.time() if now is None else now
    query = select(Venue).order_by(Venue.name)
    if venue is not None:
        query = query.where(Venue.name == venue)
    targets: list[tuple[str, Venue | None]] = [(v.name, v) for v in db.scalars(query)]
    start = resume.venue if resume is not None else None
    if start is not None:  # the rest of the turn an earlier round began
        targets = [] if start == HUB_WIDE else [(name, v) for name, v in targets if name >= start]
    if venue is None:
        targets.append((HUB_WIDE, None))
    out = {name: Purged() for name, _ in targets}
    chunks = 0
    try:
        for name, target in targets:
            steps = list(enumerate(_steps(out[name], target)))
            if start == name and resume is not None:
                steps = steps[resume.step:]
            for index, (step, count) in steps:
                while True:
                    if max_chunks is not None and chunks >= max_chunks:
                        if resume is not None:
                            resume.venue, resume.step = name, index
                        return out, False
                    chunks += 1
                    if not dry_run and not _lock(db):
                        db.rollback()
                        log.info("another purge is running: this one stops")
                        return out, False
                    n = count(step(db, target, now, CHUNK))
                    if not dry_run:
                        db.commit()
                    if n < CHUNK:
                        break
    finally:
        db.rollback()  # a dry run's changes; after a commit, nothing
    if resume is not None:
        resume.venue, resume.step = None, 0
    return out, True


def _lock(db: Session) -> bool:
    """One purging transaction at a time across the hub's processes (PostgreSQL; SQLite has one
    writer): another one running makes this purge stop, not wait."""
    if db.get_bind().dialect.name != "postgresql":
        return True
    return bool(db.scalar(_PG_PURGE_LOCK))


class Purger:
    """The running hub's purge: a round of at most ``CHUNKS_A_ROUND`` chunks every
    ``PURGE_EVERY_S`` (at once again while a round leaves work), on a worker thread. A failing
    round (the database unreachable) is one log line; the next round tries again."""

    def __init__(self, sessions: sessionmaker[Session], *, clock: Callable[[], float] = time.time,
                 every_s: float = PURGE_EVERY_S) -> None:
        self.sessions = sessions
        self.clock = clock
        self.every_s = every_s
        self.rounds = 0
        self.resume = Resume()  # where the last round stopped
        self.done = threading.Condition()  # notified after each round (tests wait on it)

    def round(self) -> bool:
        """One bounded round; returns whether it finished what was due."""
        try:
            with self.sessions() as db:
                removed, finished = purge(db, now=self.clock(), max_chunks=CHUNKS_A_ROUND, resume=self.resume)
        except SQLAlchemyError as exc:  # the database down or restarting: one line
            log.error("retention purge failed: %s", describe_error(exc, str(self.sessions.kw["bind"].url)))
            finished = True  # wait the interval before trying again
        except Exception:  # a fault of the purge itself: with its traceback, and the rounds go on
            log.exception("retention purge failed")
            finished = True
        else:
            for name, purged in removed.items():
                if purged:
                    log.info("retention purge of %s: %s", name, dataclasses.asdict(purged))
        with self.done:
            self.rounds += 1
            self.done.notify_all()
        return finished

    async def run(self) -> None:
        """Rounds until cancelled (the app's lifespan)."""
        while True:
            finished = await asyncio.to_thread(self.round)
            await asyncio.sleep(self.every_s if finished else 0.0)


def purge_now(db: Session, *, venue: Venue | None = None, dry_run: bool = False) -> dict[str, Any]:
    """``passgate-hub purge`` and ``POST /v1/admin/purge``: everything due now (of ``venue``, or
    of every venue and the hub-wide rows), in the audit log unless a dry run; what went, as JSON."""
    removed, _ = purge(db, venue=None if venue is None else venue.name, dry_run=dry_run)
    if not dry_run:
        audit.record(db, "retention.purge", None if venue is None else venue.name, venues=[venue])
    hub_wide = removed.pop(HUB_WIDE, None)
    out: dict[str, Any] = {"dry_run": dry_run,
                           "venues": {name: dataclasses.asdict(p) for name, p in removed.items()}}
    if hub_wide is not None:
        out["hub_wide"] = {"audit_deleted": hub_wide.audit_deleted,
                           "sessions_deleted": hub_wide.sessions_deleted}
    return out
