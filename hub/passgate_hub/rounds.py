"""A quiet gate's sync round answered from what this worker knows: no query, no commit.

At 10,000 gates polling every 10 s, one replica answers 1,000 rounds a second. Almost all of them are
quiet: the gate holds the bundle, no redemption was made at the venue since its cursor, and its
heartbeat says what the last one said. Read from the database, each such round cost about 6 ms of the
hub's CPU (the token's gate, the newest redemption, the heartbeat's update and commit, and a hop to a
worker thread for them). This worker keeps instead, each for ``TTL_S`` or until its own sessions
change it (``forget``):

- each token's gate, as the round needs it (``auth.GateCard``), while its venue's ``gates_rev`` is the
  one it was read with: every change to a gate's token, zone, settings or state through the hub's code
  (API, console, CLI) bumps it (``models.bump_gates_rev``), and the venue's is read again every
  ``TTL_S``, so a disabled, deleted or re-tokened gate is refused by every worker within a second
  while a gate that polls every 10 s is still known at its next round;
- each venue's bundle inputs (``VersionVectors``: keys revision, list versions and signing times,
  ``gates_rev``, zone names) and its lists' freshness statements for the current grid step, which a
  gate of protocol 4 is sent in the answer when it holds older ones (so a new step is not a new
  bundle);
- each venue's newest redemption position (``Known``): a gate whose cursor is there gets an empty
  page; a redemption uploaded through another worker reaches it at most ``TTL_S`` later.

A serving worker reads all of these again every ``REFRESH_EVERY_S`` for the venues its rounds were
answered from lately, in a few queries (``refresh``), so a venue of ten gates, whose rounds reach a
worker less often than every ``TTL_S``, is still answered from memory (read per round, it cost 16 ms
of CPU a round at 100 venues). It also writes heartbeats in batches (``Beats``): one that changes
what the hub shows of the gate (its state, fault, scanners, lists' versions, backlog or version, or
a clock offset moved by more than ``OFFSET_MOVED_S``) is written at once; one that only says "still
here" is written with the others every ``FLUSH_S``, so a gate's ``last_seen`` is at most that late.
A batch never overwrites a newer heartbeat another worker wrote, nor what a token sent that was
rotated, revoked or disabled since: such a token's quiet rounds are answered (nothing changed, no
redemption) for at most ``TTL_S`` by a worker that knew it, and change nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, event, func, inspect, select
from sqlalchemy.orm import Session

from passgate import wire

from . import denylists, sealing
from .auth import ADMIN_PREFIX, GateCard, bearer, hash_secret
from .db import among
from .models import GATE_SYNC_FIELDS, REDEMPTION_KINDS, DenyList, Event, Gate, IssuerKey, Venue, Zone

log = logging.getLogger(__name__)

TTL_S = 1.0  # how long a worker answers from what it last read of a venue
REFRESH_EVERY_S = TTL_S / 2  # a serving worker reads its venues again this often (``refreshing``)
IDLE_S = 60.0  # a venue no quiet round was answered from for this long is no longer read again
CHUNK = 1000  # venues a query of ``refresh`` asks about at once
FLUSH_S = 1.0  # heartbeats that only say "still here" are written together this often
OFFSET_MOVED_S = 1.0  # a gate's clock offset that moved more than this is written at once
# A gate read is trusted while its venue's gates_rev is unchanged (every change through the hub's
# code bumps it); this only bounds how long an edit made beside it (SQL by hand) goes unseen.
CARD_TTL_S = 300.0
MAX_KEPT = 100_000  # gates (and venues) remembered; past it, everything is read again

_GATES: Table = Gate.__table__  # type: ignore[assignment]  # a mapped class's table is a Table
# A batch never takes a gate's row back to an older heartbeat (one another worker wrote since), and
# never writes what a token sent that was rotated, revoked or disabled since (on another worker).
_WRITE_BEAT = (_GATES.update()
               .where(_GATES.c.id == bindparam("b_id"), _GATES.c.token_hash == bindparam("b_token"),
                      _GATES.c.disabled_at.is_(None),
                      (_GATES.c.last_seen.is_(None)) | (_GATES.c.last_seen < bindparam("b_last_seen")))
               .values(last_seen=bindparam("b_last_seen"), clock_offset_s=bindparam("b_offset"),
                       protocol=bindparam("b_protocol"), health=bindparam("b_health")))
_NEWEST_REDEMPTION = select(func.max(Event.pos)).where(Event.venue_id == bindparam("venue_id"),
                                                       Event.kind.in_(REDEMPTION_KINDS))
_NEWEST_OF_VENUE = (select(func.max(Event.pos))
                    .where(Event.venue_id == Venue.id, Event.kind.in_(REDEMPTION_KINDS))
                    .correlate(Venue).scalar_subquery())


Held = Mapping[str, int | None]  # by kind: a signing time or a statement's time the gate holds


def bundle_etag(keys_rev: int, zone: str | None, config: dict[str, Any],
                versions: Mapping[str, tuple[int, int]], have: Mapping[str, int], signed: Held,
                as_of: int | None) -> tuple[str, bool]:
    """The ETag of the bundle for these inputs, and whether the gate holds what it brings.

    The ETag names the lists as the gate will hold them once it applied the bundle (so the round
    after an update is quiet), not as it holds them now: the hub's version, or, for a list the gate
    holds at the hub's number signed at another time (a restored hub's; ``denylists`` begins a new
    epoch for it), what the gate holds. ``as_of``: the freshness grid step, for a gate that gets
    its statements only with the bundle (protocol 3); None when they come apart (protocol 4)."""
    settled, holds = [], True
    for kind, (version, issued_at) in sorted(versions.items()):
        if have.get(kind) == version and signed.get(kind) not in (None, issued_at):
            settled.append((kind, version, signed.get(kind)))
        else:
            settled.append((kind, version, issued_at))
            holds = holds and have.get(kind) == version
    digest = hashlib.sha256(json.dumps([keys_rev, zone, config, settled, as_of], sort_keys=True,
                                       default=str).encode()).hexdigest()
    return f'"{digest[:32]}"', holds


def due_statements(statements: Mapping[str, str], versions: Mapping[str, tuple[int, int]],
                   have: Mapping[str, int], signed: Held, held_as_of: Held, as_of: int) -> dict[str, str]:
    """Of the statements for ``versions`` as of ``as_of``, those for lists the gate holds exactly
    (that version, signed then: never one held at this number with other contents) and holds no
    statement as new for."""
    return {kind: text for kind, text in statements.items()
            if (have.get(kind), signed.get(kind)) == versions.get(kind)
            and (held_as_of.get(kind) or -1) < as_of}


@dataclass(slots=True)
class _Venue:
    """A venue as this worker last read it: what a bundle's ETag is made of, and the freshness
    statements of its lists for one grid step."""

    until: float  # answered from until then
    keys_rev: int
    gates_rev: int
    versions: dict[str, tuple[int, int]]
    as_of: int
    fresh: dict[str, str]  # kind -> base64 statement for ``versions[kind]`` as of ``as_of``
    used: float  # the last round answered from it


class VersionVectors:
    """What a bundle's ETag is made of, per venue (keys revision, list versions and signing times,
    ``gates_rev``, statements) and per zone (its name), as this worker last read them: a gate of
    protocol 3 that holds them all is answered "unchanged" without a query. Each is trusted for
    ``TTL_S`` after it was read (by a full round, or by ``refresh`` for every venue answered from
    lately), so a change on the hub reaches every worker's answers within that; anything else
    takes the full path."""

    def __init__(self) -> None:
        self._venues: dict[int, _Venue] = {}
        self._zones: dict[int, tuple[float, str, int]] = {}  # zone id -> (until, name, venue id)
        self.generation = 0  # moved by ``forget``: what was read before it is not kept
        self._lock = threading.Lock()  # a check of ``generation`` and the write it allows are one

    def unchanged(self, gate: Any, have: Mapping[str, int], signed: Mapping[str, int | None],
                  held_etag: str | None, now: float, *, apart: bool) -> str | None:
        """The ETag the gate holds, when it is still the bundle's and the gate holds what it
        brings; else None. ``apart``: statements come apart from the bundle (``bundle_etag``)."""
        venue = self._venues.get(gate.venue_id)
        if held_etag is None or venue is None or venue.until < now:
            return None
        known, zone = self.zone(gate, now)
        if not known:
            return None
        etag, holds = bundle_etag(venue.keys_rev, zone, gate.config, venue.versions, have, signed,
                                  None if apart else denylists.fresh_as_of(now))
        if etag != held_etag or not holds:
            return None
        venue.used = now
        return etag

    def zone(self, gate: Any, now: float) -> tuple[bool, str | None]:
        """Whether the gate's zone is known (read within ``TTL_S``), and its name (None: no zone)."""
        if gate.zone_id is None:
            return True, None
        kept = self._zones.get(gate.zone_id)
        return (True, kept[1]) if kept is not None and kept[0] >= now else (False, None)

    def statements(self, venue_id: int, have: Mapping[str, int], signed: Mapping[str, int | None],
                   held_as_of: Mapping[str, int | None], now: float) -> dict[str, str] | None:
        """The statements due to a gate (``due_statements``) from the venue's for this grid step
        as read (None: not read for this step yet)."""
        venue = self._venues.get(venue_id)
        as_of = denylists.fresh_as_of(now)
        if venue is None or venue.as_of != as_of:
            return None
        return due_statements(venue.fresh, venue.versions, have, signed, held_as_of, as_of)

    def gates_rev(self, venue_id: int, now: float) -> int | None:
        """The venue's ``gates_rev`` as read at most ``TTL_S`` ago (``quiet_gate``)."""
        venue = self._venues.get(venue_id)
        return venue.gates_rev if venue is not None and venue.until >= now else None

    def read(self, generation: int, gate: Any, venue: Venue, zone: str | None,
             versions: Mapping[str, tuple[int, int]], as_of: int, fresh: dict[str, str], now: float) -> None:
        """Keep what a full round read (unless this worker forgot since ``generation``)."""
        with self._lock:
            if generation != self.generation:
                return
            if len(self._venues) >= MAX_KEPT:
                self._venues.clear()
                self._zones.clear()
            self._venues[gate.venue_id] = _Venue(now + TTL_S, venue.keys_rev, venue.gates_rev,
                                                 dict(versions), as_of, fresh, now)
            if gate.zone_id is not None and zone is not None:
                self._zones[gate.zone_id] = (now + TTL_S, zone, gate.venue_id)

    def forget(self) -> None:
        """Everything: this worker changed what an ETag is made of (its own sessions' flushes)."""
        with self._lock:
            self.generation += 1
            self._venues.clear()
            self._zones.clear()

    def watch(self, sessions: Any, also: Callable[[], None]) -> None:
        """Forget (and call ``also``) on every flush of this worker's sessions that changes a list,
        a key, a venue, a zone, a gate's settings or its token (not a heartbeat): its next answers
        are read again."""
        @event.listens_for(sessions, "after_flush")
        def _flushed(session: Any, _context: Any) -> None:
            for row in (*session.new, *session.dirty, *session.deleted):
                if isinstance(row, DenyList | Venue | Zone | IssuerKey) or (
                        isinstance(row, Gate) and any(
                            inspect(row).attrs[name].history.has_changes() for name in GATE_SYNC_FIELDS)):
                    self.forget()
                    also()
                    return

    def refresh(self, db: Session, freshness: denylists.FreshnessCache, now: float) -> list[int]:
        """Read again, in a few queries, every venue a round was answered from within ``IDLE_S``
        (and its zones, and statements for this grid step), so that quiet rounds of a venue whose
        gates reach this worker less often than every ``TTL_S`` are still answered from memory.
        ``now`` is taken before the reads. Returns the venues read; the others are dropped."""
        generation = self.generation
        kept_now = list(self._venues.items())
        wanted = [venue_id for venue_id, kept in kept_now if kept.used >= now - IDLE_S]
        idle = [venue_id for venue_id, kept in kept_now if kept.used < now - IDLE_S]
        as_of = denylists.fresh_as_of(now)
        read: dict[int, _Venue] = {}
        zones: dict[int, tuple[float, str, int]] = {}
        dialect = db.get_bind().dialect.name
        for chunk in _chunks(wanted):
            venues = {row.id: row for row in db.execute(
                select(Venue.id, Venue.keys_rev, Venue.gates_rev, Venue.offline)
                .where(among(Venue.id, chunk, dialect)))}
            versions: dict[int, dict[str, tuple[int, int]]] = {venue_id: {} for venue_id in venues}
            for venue_id, kind, version, issued_at in db.execute(
                    select(DenyList.venue_id, DenyList.kind, DenyList.version, DenyList.issued_at)
                    .where(among(DenyList.venue_id, chunk, dialect))):
                versions[venue_id][kind] = (version, issued_at)
            for zone_id, name, venue_id in db.execute(
                    select(Zone.id, Zone.name, Zone.venue_id).where(among(Zone.venue_id, chunk, dialect))):
                zones[zone_id] = (now + TTL_S, name, venue_id)
            for venue_id, row in venues.items():
                held = versions[venue_id]
                if not row.offline and any(version == 0 for version, _ in held.values()):
                    continue  # a list never signed: the full round signs it
                kept = self._venues.get(venue_id)
                fresh = (kept.fresh if kept is not None and (kept.as_of, kept.versions) == (as_of, held)
                         else _statements(db, freshness, row, held, as_of))
                read[venue_id] = _Venue(now + TTL_S, row.keys_rev, row.gates_rev, held, as_of, fresh,
                                        kept.used if kept is not None else now)
        with self._lock:
            if generation != self.generation:  # forgotten meanwhile: what was read may be older
                return []
            # merged: a venue a full round read meanwhile for the first time stays
            gone = {*wanted, *idle}
            for venue_id in gone:
                self._venues.pop(venue_id, None)
            self._venues.update(read)
            for zone_id in [z for z, kept in self._zones.items() if kept[2] in gone]:
                self._zones.pop(zone_id, None)
            self._zones.update(zones)
        return list(read)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    return (ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK))


def _statements(db: Session, freshness: denylists.FreshnessCache, venue: Any,
                versions: Mapping[str, tuple[int, int]], as_of: int) -> dict[str, str]:
    """The statements for a venue's lists as of ``as_of`` that the hub can sign (base64)."""
    out = {}
    for kind, (version, _) in versions.items():
        data = freshness.kept(venue.id, kind, version, as_of)
        if data is None and not venue.offline and version:
            whole = db.get(Venue, venue.id)
            try:
                data = freshness.get(db, whole, kind, version, as_of) if whole is not None else None
            except (sealing.SealingError, LookupError) as exc:  # judged by the list's age at the gate
                log.debug("no freshness statement for venue %s's %s list: %s", venue.id, kind, exc)
        if data is not None:
            out[kind] = base64.b64encode(data).decode()
    return out


class Known:
    """Gates by token digest and venues' newest redemption positions, each until its expiry."""

    def __init__(self) -> None:
        self._gates: dict[str, tuple[float, GateCard]] = {}
        self._newest: dict[int, tuple[float, int]] = {}
        self.generation = 0  # moved by ``forget``: a newest position read before it is not kept
        self._lock = threading.Lock()

    def gate(self, digest: str, now: float) -> GateCard | None:
        kept = self._gates.get(digest)
        return kept[1] if kept is not None and kept[0] >= now else None

    def keep_gate(self, digest: str, card: GateCard, now: float) -> None:
        if len(self._gates) >= MAX_KEPT:
            self._gates.clear()
        self._gates[digest] = (now + CARD_TTL_S, card)

    def nothing_after(self, venue_id: int, after: int, now: float) -> bool:
        """Whether the venue's newest redemption is at ``after``, as last read."""
        kept = self._newest.get(venue_id)
        return kept is not None and kept[0] >= now and kept[1] == after

    def read_newest(self, db: Session, venue_id: int, now: float) -> None:
        generation = self.generation
        newest = db.connection().execute(_NEWEST_REDEMPTION, {"venue_id": venue_id}).scalar()
        with self._lock:
            if generation != self.generation:
                return
            if len(self._newest) >= MAX_KEPT:
                self._newest.clear()
            self._newest[venue_id] = (now + TTL_S, newest or 0)

    def refresh(self, db: Session, venue_ids: list[int], now: float) -> None:
        """Read the newest redemption of these venues again (``now`` taken before the reads)."""
        generation = self.generation
        newest: dict[int, int | None] = {}
        for chunk in _chunks(venue_ids):
            newest.update((venue_id, pos) for venue_id, pos in db.execute(
                select(Venue.id, _NEWEST_OF_VENUE).where(among(Venue.id, chunk, db.get_bind().dialect.name))))
        with self._lock:
            if generation == self.generation:
                self._newest.update({venue_id: (now + TTL_S, pos or 0) for venue_id, pos in newest.items()})

    def forget(self, venue_id: int | None = None) -> None:
        """Everything (a gate, key or list changed here), or one venue's redemptions (stored here)."""
        with self._lock:
            self.generation += 1
            if venue_id is not None:
                self._newest.pop(venue_id, None)
                return
            self._gates.clear()
            self._newest.clear()


def _substance(beat: dict[str, Any], protocol: int) -> str:
    """What the hub shows of a gate from its heartbeat, without what changes every round or every
    freshness grid step: the times (a list's age, which a new statement makes younger, reaches the
    hub with the batch)."""
    lists = {kind: held["version"] for kind, held in beat["lists"].items()}
    rest = {key: value for key, value in beat.items() if key not in ("t", "lists")}
    return json.dumps([protocol, lists, rest], sort_keys=True, default=str)


class Beats:
    """Heartbeats: written at once when they change something, else in batches (see the module)."""

    def __init__(self) -> None:
        self._pending: dict[int, dict[str, Any]] = {}
        self._written: dict[int, tuple[str, float]] = {}  # gate id -> (substance, clock offset)
        self._lock = threading.Lock()

    @staticmethod
    def row(card: GateCard, beat: dict[str, Any], protocol: int, now: float) -> dict[str, Any]:
        return {"b_id": card.id, "b_token": card.token_hash, "b_last_seen": now, "b_offset": beat["t"] - now,
                "b_protocol": protocol, "b_health": {**beat, "received": now}}

    def batched(self, card: GateCard, beat: dict[str, Any], protocol: int, now: float) -> bool:
        """Join the batch if this heartbeat changes nothing this worker last wrote of the gate;
        False (and nothing done) when it must be written at once (``take``)."""
        row = self.row(card, beat, protocol, now)
        substance = _substance(beat, protocol)
        with self._lock:
            if not self._unchanged(card.id, substance, row["b_offset"]):
                return False
            self._pending[card.id] = row
        return True

    def take(self, card: GateCard, beat: dict[str, Any], protocol: int, now: float) -> dict[str, Any] | None:
        """The row to write now, or None when the heartbeat joined the batch."""
        row = self.row(card, beat, protocol, now)
        substance = _substance(beat, protocol)
        with self._lock:
            if self._unchanged(card.id, substance, row["b_offset"]):
                self._pending[card.id] = row
                return None
            if len(self._written) >= MAX_KEPT:
                self._written.clear()
            self._written[card.id] = (substance, row["b_offset"])
            self._pending.pop(card.id, None)  # older than this one
        return row

    def _unchanged(self, gate: int, substance: str, offset: float) -> bool:
        written = self._written.get(gate)
        return written is not None and written[0] == substance and abs(written[1] - offset) <= OFFSET_MOVED_S

    @staticmethod
    def write(db: Session, rows: list[dict[str, Any]]) -> None:
        """In the order of the gates' ids: two workers' batches over the same gates lock their
        rows in one order (in arrival order, they deadlocked and PostgreSQL dropped one)."""
        if rows:
            db.connection().execute(_WRITE_BEAT, sorted(rows, key=lambda row: row["b_id"]))

    def flush(self, sessions: Callable[[], Session]) -> int:
        """Write the batch; returns how many heartbeats. On an error they are dropped (each says
        only "still here", and the gate's next one says it again)."""
        with self._lock:
            rows, self._pending = list(self._pending.values()), {}
        if rows:
            with sessions() as db:
                self.write(db, rows)
                db.commit()
        return len(rows)

    @contextlib.asynccontextmanager
    async def flushing(self, sessions: Callable[[], Session]) -> AsyncIterator[None]:
        """While the app serves: the batch written every ``FLUSH_S``, and once more at the end."""
        async def run() -> None:
            while True:
                await asyncio.sleep(FLUSH_S)
                try:
                    await asyncio.to_thread(self.flush, sessions)
                except Exception:  # the database away: the next batch tries again
                    log.exception("heartbeats not written")

        task = asyncio.create_task(run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await asyncio.to_thread(self.flush, sessions)
            except Exception:
                log.exception("the last heartbeats not written")


def quiet_gate(request: Any, gate_id: str, known: Known, gates_rev: Callable[[int, float], int | None],
               now: float) -> GateCard | None:
    """The token's gate when this worker knows it, it may sync, and its venue's ``gates_rev`` (as
    read within ``TTL_S``) is still the one it was read with; None: the full path decides (and
    refuses what must be refused, with its reason)."""
    secret = bearer(request)
    if secret.startswith(ADMIN_PREFIX):
        return None
    card = known.gate(hash_secret(secret), now)
    if (card is None or card.gate_id != gate_id or card.disabled_at is not None
            or gates_rev(card.venue_id, now) != card.gates_rev):
        return None
    return card


def quiet_answer(now: float, etag: str, after: int, fresh: dict[str, str]) -> bytes:
    """The answer to a quiet round: the hub's clock, the bundle unchanged, no redemption, and the
    statements newer than the gate's."""
    return json.dumps(wire.dump(wire.SyncAnswer(server_time=now, etag=etag, bundle=None, fresh=fresh,
                                                redemptions=wire.RedemptionPage(cursor=after)))).encode()


def refresh(sessions: Callable[[], Session], vectors: VersionVectors, known: Known,
            freshness: denylists.FreshnessCache, now: float) -> int:
    """Read again what quiet rounds are answered from, for the venues answered lately; returns
    how many venues."""
    with sessions() as db:
        venue_ids = vectors.refresh(db, freshness, now)
        known.refresh(db, venue_ids, now)
    return len(venue_ids)


@contextlib.asynccontextmanager
async def refreshing(work: Callable[[float], int]) -> AsyncIterator[None]:
    """While the app serves: ``work(now)`` every ``REFRESH_EVERY_S`` on a thread (``refresh``)."""
    async def run() -> None:
        failing = False
        while True:
            await asyncio.sleep(REFRESH_EVERY_S)
            try:
                await asyncio.to_thread(work, time.time())
            except Exception:  # the database away: rounds take the full path (and fail) meanwhile
                if not failing:
                    log.exception("what quiet rounds are answered from cannot be read again")
                failing = True
            else:
                if failing:
                    log.info("what quiet rounds are answered from is read again")
                failing = False

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
