"""Revocations and blocks on the hub: rows per pass, one version per change, signed files for gates.

Each change (a batch of revocations, blocks or unblocks) takes a venue's list from version N to
N + 1 and stores the signed delta file right away, so serving a gate that is a few versions behind
is a primary-key read. A gate further behind (away for a week) gets one compacted delta from its
version to the newest, built from the entries added and removed in between (indexed by version)
and cached; a new gate, one in an older epoch, or one whose changes would outweigh the list, gets
a signed snapshot. A snapshot is built once for the hub, not once a worker: from the newest one
the hub built before (kept in ``DenySnapshot``) and the signed deltas since, by one worker at a
time (see ``SnapshotCache``); from the rows only when there is none of the same epoch. The scope
of a venue's lists is the venue's name.

A gate's stale-list policy judges how recently the hub vouched for its list, and a quiet list is
not a stale one. A gate of protocol 3 is sent a signed freshness statement with each bundle ("list
KIND at VERSION is current as of T", ``passgate.freshness``; T on a ``FRESH_EVERY_S`` grid, so every
worker signs the same bytes and a gate's ETag changes only that often), so a version changes only
when entries change and a gate that was away for a week catches up with the deltas of real changes.
For older gates, lists are re-signed with an empty delta when their newest version is older than
``REFRESH_S``, as before; a list still at version 0 (never signed) gets its first version either way.

Epochs (``version = epoch << 32 | change``, see ``passgate.denylist``): a gate reporting a version
this hub never reached means the hub was restored from a backup and its versions went back. The
hub then starts a new epoch, numbered by the minutes since ``EPOCH_ZERO``, whose snapshot every gate
takes as newer. What a gate reports only ever triggers that; it never sets a version: a new epoch
is the hub's clock, starts at most once per ``EPOCH_EVERY_S``, and a claim from an epoch not older
than now is ignored, so a gate token cannot push a venue's versions anywhere near their end (2**31
minutes is four thousand years).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from passgate import TrustStore, denylist, freshness
from passgate.cose import PrivateKey
from passgate.wire import KeyPurpose

from .keys import held_key
from .models import DenyDelta, DenyEntry, DenyList, DenySnapshot, Venue

KINDS = denylist.KINDS
MAX_DELTAS = 32  # further behind than this, one compacted delta (or a snapshot)
REFRESH_S = 3600.0
FRESH_EVERY_S = 300  # freshness statements are signed for times on this grid
FRESH_PROTOCOL = 3  # the first gate protocol that reads freshness statements
FRESH_APART_PROTOCOL = 4  # the first that takes them in the sync answer, apart from the bundle
EPOCH_ZERO = 1_704_067_200  # 2024-01-01T00:00:00Z; an epoch is the minute it began, counted from here
EPOCH_EVERY_S = 300  # a new epoch at most this often, whatever gates report
# A (venue, kind)'s snapshot build on PostgreSQL: a two-key advisory lock in this space ("pgsn"),
# apart from the retention purge's ("pgdt", 1) and the one-key locks ingest takes per pass.
_PG_BUILD_LOCK = text("SELECT pg_advisory_xact_lock(1885827950, :key)")
log = logging.getLogger(__name__)


class DenyListChangeError(ValueError):
    """A change the list kind does not allow (revocations are permanent)."""


def signing_key(db: Session, venue: Venue) -> PrivateKey:
    """The venue's deny-list signing key (created with the venue; gates trust it via the bundle)."""
    key = held_key(db, venue, "denylist")
    if key is None:
        raise LookupError(f"venue {venue.name!r} has no deny-list signing key")
    return key


def locked_list(db: Session, venue: Venue, kind: str) -> DenyList:
    """The list's version row, locked until commit so concurrent changes take turns."""
    return db.scalars(select(DenyList).where(DenyList.venue_id == venue.id, DenyList.kind == kind)
                      .with_for_update()).one()


def _active(db: Session, venue: Venue, kind: str, pass_ids: Iterable[str] | None = None, *,
            at: int | None = None) -> set[str]:
    """The pass ids on the list now, or at version ``at`` (a snapshot of ``at`` holds none a change
    committed since added)."""
    mine = (DenyEntry.venue_id == venue.id, DenyEntry.kind == kind)
    if at is None:
        query = select(DenyEntry.pass_id).where(*mine, DenyEntry.version_removed.is_(None))
    else:
        query = select(DenyEntry.pass_id).where(
            *mine, DenyEntry.version_added <= at,
            DenyEntry.version_removed.is_(None) | (DenyEntry.version_removed > at))
    if pass_ids is not None:
        query = query.where(DenyEntry.pass_id.in_(list(pass_ids)))
    return set(db.scalars(query))


def change(db: Session, venue: Venue, kind: str, *, adds: Iterable[str] = (),
           removes: Iterable[str] = (), reason: str | None = None,
           now: float | None = None) -> tuple[int, int]:
    """Add and remove pass ids (hex); returns ``(version, entries changed)``. No-op changes keep
    the version. The caller commits."""
    if kind not in KINDS:
        raise DenyListChangeError(f"kind must be one of {', '.join(KINDS)}")
    adds, removes = sorted(set(adds)), sorted(set(removes))
    if kind == "revoked" and removes:
        raise DenyListChangeError("revocation is permanent; block and unblock instead")
    row = locked_list(db, venue, kind)
    listed = _active(db, venue, kind, [*adds, *removes]) if adds or removes else set()
    adds = [p for p in adds if p not in listed]
    removes = [p for p in removes if p in listed]
    if not adds and not removes:
        return row.version, 0
    # an offline-issuer venue's change waits, as the next version, for its signed files
    version = row.version + 1 if venue.offline else _bump(db, venue, row, adds, removes, now)
    db.add_all(DenyEntry(venue_id=venue.id, kind=kind, pass_id=p, version_added=version,
                         reason=reason) for p in adds)
    if removes:
        db.execute(update(DenyEntry).where(DenyEntry.venue_id == venue.id, DenyEntry.kind == kind,
                                           DenyEntry.pass_id.in_(removes),
                                           DenyEntry.version_removed.is_(None))
                   .values(version_removed=version))
    return version, len(adds) + len(removes)


def _bump(db: Session, venue: Venue, row: DenyList, adds: list[str], removes: list[str],
          now: float | None) -> int:
    issued_at = int(time.time() if now is None else now)
    delta = denylist.Delta.from_ids(kind=row.kind, scope=venue.name, base=row.version,
                                    adds=[bytes.fromhex(p) for p in adds],
                                    removes=[bytes.fromhex(p) for p in removes], issued_at=issued_at)
    db.add(DenyDelta(venue_id=venue.id, kind=row.kind, base=row.version,
                     data=delta.to_signed(signing_key(db, venue))))
    row.version, row.issued_at = row.version + 1, issued_at
    return row.version


def refreshed_versions(db: Session, venue: Venue, have: Mapping[str, int] | None = None,
                       signed: Mapping[str, int | None] | None = None, *,
                       now: float | None = None, by_age: bool = True,
                       ) -> tuple[dict[str, tuple[int, int]], bool]:
    """``(current_versions, changed)``, after re-signing lists whose newest version is older than
    ``REFRESH_S`` (empty delta; ``by_age=False``, for a gate that reads freshness statements: only
    a list still at version 0) and starting a new epoch for lists a gate holds ahead of this hub
    (``have``: the gate's versions by kind; see the module docstring), or at this hub's version
    but signed at another time (``signed``: a restored hub that reached the number again with
    other contents). The caller commits when ``changed``."""
    now = time.time() if now is None else now
    have, signed = have or {}, signed or {}
    if venue.offline:  # the hub cannot sign them: the operator's signed uploads keep them fresh
        return current_versions(db, venue), False

    def forked(kind: str, version: int, issued_at: int) -> bool:
        claimed = signed.get(kind)
        return (have.get(kind) == version and version > 0 and claimed is not None and claimed != issued_at
                and denylist.epoch_of(version) + EPOCH_EVERY_S // 60 <= _minute(now))

    versions = current_versions(db, venue)

    def old(version: int, issued_at: int) -> bool:
        return version == 0 or (by_age and now - issued_at >= REFRESH_S)

    def due(kind: str, version: int, issued_at: int) -> bool:
        return (old(version, issued_at) or _restart(version, have.get(kind, 0), now)
                or forked(kind, version, issued_at))

    if not any(due(kind, *current) for kind, current in versions.items()):
        return versions, False
    for kind in KINDS:
        row = locked_list(db, venue, kind)  # checked again under the lock
        if _restart(row.version, have.get(kind, 0), now) or forked(kind, row.version, row.issued_at):
            log.warning("%s: a gate holds %s list version %s, ahead of this hub's %s or signed at "
                        "another time (restored from a backup?): a new epoch begins", venue.name, kind,
                        denylist.describe_version(have[kind]), denylist.describe_version(row.version))
            row.version, row.issued_at = denylist.make_version(_minute(now)), int(now)
        elif old(row.version, row.issued_at):
            _bump(db, venue, row, [], [], now)
        versions[kind] = (row.version, row.issued_at)
    return versions, True


def _minute(now: float) -> int:
    return max(0, int(now - EPOCH_ZERO) // 60)


def _restart(version: int, have: int, now: float) -> bool:
    """Whether a gate holding ``have`` while this hub is at ``version`` starts a new epoch: the
    gate is ahead, its epoch began before this minute (a later one is made up, or this clock went
    back), and the hub's own epoch is at least ``EPOCH_EVERY_S`` old."""
    minute = _minute(now)
    return (have > version and denylist.epoch_of(have) < minute
            and denylist.epoch_of(version) + EPOCH_EVERY_S // 60 <= minute)


def current_versions(db: Session, venue: Venue) -> dict[str, tuple[int, int]]:
    """``{kind: (version, issued_at)}`` for the venue's lists."""
    rows = db.execute(select(DenyList.kind, DenyList.version, DenyList.issued_at)
                      .where(DenyList.venue_id == venue.id))
    return {kind: (version, issued_at) for kind, version, issued_at in rows}


def fresh_as_of(now: float) -> int:
    """The time a statement signed now vouches for: ``now`` down to the ``FRESH_EVERY_S`` grid."""
    return int(now) // FRESH_EVERY_S * FRESH_EVERY_S


class _Kept:
    """Signed files this worker built, by key; past ``size``, the least recently used go."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[tuple[int | str, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def _kept(self, key: tuple[int | str, ...]) -> bytes | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def _keep(self, key: tuple[int | str, ...], data: bytes) -> bytes:
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return data


class FreshnessCache(_Kept):
    """Signed freshness statements by (venue, kind, version, as_of): one signature a list a grid
    step per process (Ed25519 is deterministic: every worker makes the same bytes)."""

    def __init__(self, size: int = 50_000) -> None:  # ~200 bytes each: two lists of 25,000 venues
        super().__init__(size)

    def kept(self, venue_id: int, kind: str, version: int, as_of: int) -> bytes | None:
        """The statement when this process signed it already; None: not (``get`` signs it)."""
        return self._kept((venue_id, kind, version, as_of))

    def get(self, db: Session, venue: Venue, kind: str, version: int, as_of: int) -> bytes | None:
        """The statement that ``kind`` at ``version`` is current as of ``as_of``; None for a list
        never signed (version 0) or an offline issuer's venue (the hub holds no key to sign with)."""
        if version == 0 or venue.offline:
            return None
        key = (venue.id, kind, version, as_of)
        kept = self._kept(key)
        if kept is not None:
            return kept
        return self._keep(key, freshness.sign(signing_key(db, venue), kind=kind, scope=venue.name,
                                              version=version, as_of=as_of))


class SnapshotCache(_Kept):
    """Signed snapshots by (venue, kind, version) and compacted deltas by (venue, kind, base,
    version): a few kept in each worker. A snapshot this worker does not keep is built once for
    the hub: the newest one built (by any worker) is kept in ``DenySnapshot``, and the next comes
    from it, or from a newer one this worker keeps, and the signed deltas since (at 1 M entries,
    from the rows took 6 s and 600 MB, each worker of a reconnecting fleet at once)."""

    def __init__(self, size: int = 64) -> None:
        super().__init__(size)
        self._turns: dict[tuple[int, str], threading.Lock] = {}

    def get(self, db: Session, venue: Venue, kind: str, version: int, issued_at: int) -> bytes:
        if venue.offline:
            stored = stored_snapshot(db, venue, kind, version)
            if stored is None:
                raise LookupError(f"no signed {kind} list of {venue.name!r} at version {version} "
                                  "was uploaded")
            return stored
        key = (venue.id, kind, version)
        kept = self._kept(key)
        if kept is not None:
            return kept
        with self._turn(venue.id, kind):
            kept = self._kept(key)  # another thread of this worker built it meanwhile
            if kept is not None:
                return kept
            with _building(db, venue, kind) as session:
                data = self._build(session, venue, kind, version, issued_at)
        return self._keep(key, data)

    def _turn(self, venue_id: int, kind: str) -> threading.Lock:
        """This worker's threads take turns building a list, so only one holds a second
        connection (``_building``) and the others find the snapshot kept."""
        with self._lock:
            return self._turns.setdefault((venue_id, kind), threading.Lock())

    def _build(self, db: Session, venue: Venue, kind: str, version: int, issued_at: int) -> bytes:
        """The snapshot at ``version``: the stored one, or built from the newest earlier one
        (stored or kept) and the deltas, or from the rows; stored unless a newer one is."""
        stored = db.execute(select(DenySnapshot.version, DenySnapshot.data).where(
            DenySnapshot.venue_id == venue.id, DenySnapshot.kind == kind)).one_or_none()
        if stored is not None and stored.version == version:  # another worker built it
            return stored.data
        bases = [base for base in (self._earlier(venue.id, kind, version), stored)
                 if base is not None and base[0] < version
                 and denylist.epoch_of(base[0]) == denylist.epoch_of(version)]
        data = _from_earlier(db, venue, kind, version, *max(bases, key=lambda b: b[0])) if bases else None
        if data is None:  # none of this epoch (the list's first build, a new epoch), or it failed
            ids = [bytes.fromhex(p) for p in _active(db, venue, kind, at=version)]
            data = denylist.DenyList.from_ids(ids, kind=kind, scope=venue.name, version=version,
                                              issued_at=issued_at).to_signed(signing_key(db, venue))
        _store(db, venue, kind, version, data)
        return data

    def _earlier(self, venue_id: int, kind: str, version: int) -> tuple[int, bytes] | None:
        """The newest snapshot of the list before ``version`` this worker keeps."""
        with self._lock:
            earlier = [(k[2], data) for k, data in self._items.items()
                       if len(k) == 3 and k[:2] == (venue_id, kind) and isinstance(k[2], int)
                       and k[2] < version]
        return max(earlier, key=lambda e: e[0], default=None)

    def compacted(self, db: Session, venue: Venue, kind: str, have: int, current: tuple[int, int]
                  ) -> bytes | None:
        """One signed delta from ``have`` to ``current`` (version, issued_at); None when a snapshot
        is as small (more changes than half the list)."""
        version, issued_at = current
        key = (venue.id, kind, have, version)
        kept = self._kept(key)
        if kept is not None:
            return kept
        adds, removes = changes_between(db, venue, kind, have, version)
        size = db.scalar(select(func.count()).select_from(DenyEntry).where(
            DenyEntry.venue_id == venue.id, DenyEntry.kind == kind, DenyEntry.version_removed.is_(None))) or 0
        if len(adds) + len(removes) > max(MAX_DELTAS, size // 2):
            return None
        data = denylist.Delta.from_ids(
            kind=kind, scope=venue.name, base=have, version=version, issued_at=issued_at,
            adds=[bytes.fromhex(p) for p in adds], removes=[bytes.fromhex(p) for p in removes],
        ).to_signed(signing_key(db, venue))
        return self._keep(key, data)


def changes_between(db: Session, venue: Venue, kind: str, have: int, version: int
                    ) -> tuple[set[str], set[str]]:
    """(added, removed) pass ids from the list at ``have`` to the list at ``version``: entries
    that came after ``have`` and are still there at ``version``, and entries there at ``have``
    and gone by ``version``. A pass unblocked and blocked again in between is in both: it was
    there at either end, so it is in neither."""
    mine = (DenyEntry.venue_id == venue.id, DenyEntry.kind == kind)
    added = set(db.scalars(select(DenyEntry.pass_id).where(
        *mine, DenyEntry.version_added > have, DenyEntry.version_added <= version,
        (DenyEntry.version_removed.is_(None)) | (DenyEntry.version_removed > version))))
    removed = set(db.scalars(select(DenyEntry.pass_id).where(
        *mine, DenyEntry.version_removed > have, DenyEntry.version_removed <= version,
        DenyEntry.version_added <= have)))
    both = added & removed
    return added - both, removed - both


def updates_for(db: Session, venue: Venue, kind: str, have: int, current: tuple[int, int],
                cache: SnapshotCache) -> list[bytes]:
    """Signed files that take a gate holding version ``have`` to ``current`` (version, issued_at),
    in order: nothing, the deltas, one compacted delta (further behind than ``MAX_DELTAS``), or
    one snapshot (a new gate, one in an older epoch, or changes outweighing the list). A gate ahead
    gets nothing: it would refuse an older snapshot, and ``refreshed_versions`` starts the epoch
    that brings it forward."""
    version, issued_at = current
    if have >= version or version == 0:
        return []
    if venue.offline:
        return _uploaded(db, venue, kind, have, version)
    if version - have > MAX_DELTAS:
        if have and denylist.epoch_of(have) == denylist.epoch_of(version):
            compacted = cache.compacted(db, venue, kind, have, current)
            if compacted is not None:
                return [compacted]
        return [cache.get(db, venue, kind, version, issued_at)]
    return list(db.scalars(select(DenyDelta.data).where(DenyDelta.venue_id == venue.id,
                                                        DenyDelta.kind == kind,
                                                        DenyDelta.base >= have)
                           .order_by(DenyDelta.base)))


@contextmanager
def _building(db: Session, venue: Venue, kind: str) -> Iterator[Session]:
    """The session a snapshot of (venue, kind) is built and stored in, one build at a time.

    PostgreSQL: a short transaction of its own, holding an advisory lock on (venue, kind) until it
    commits the stored snapshot, so workers asked at once take turns and the later ones find it
    built. Not the list's row lock (``locked_list``): an operator's block would wait for a build.
    SQLite: the caller's session. Its transaction (``BEGIN IMMEDIATE``, see ``db``) holds the one
    write lock already, so builds take turns across processes as every writer does, and another
    connection could not write before the caller ends; the stored snapshot is kept when the
    caller commits (a sync round does; a request that writes nothing else rolls it back)."""
    engine = db.get_bind().engine
    if engine.dialect.name != "postgresql":
        yield db
        return
    with Session(engine) as session, session.begin():
        session.execute(_PG_BUILD_LOCK, {"key": (venue.id * len(KINDS) + KINDS.index(kind)) % 2**31})
        yield session


def _from_earlier(db: Session, venue: Venue, kind: str, version: int, base: int, data: bytes
                  ) -> bytes | None:
    """The snapshot at ``version`` built from the signed one at ``base`` (same epoch) and the
    signed deltas since: 8 bytes an entry in arrays, where the rows take a Python object each.
    None when a delta is missing or a file does not verify (never expected): the rows know."""
    deltas = list(db.scalars(select(DenyDelta.data).where(
        DenyDelta.venue_id == venue.id, DenyDelta.kind == kind, DenyDelta.base >= base,
        DenyDelta.base < version).order_by(DenyDelta.base)))
    if len(deltas) != version - base:
        return None
    key = signing_key(db, venue)
    trust = TrustStore()
    trust.add(key.public_key(), purpose=KeyPurpose.DENYLIST, scope=venue.name)
    try:
        current = denylist.read_signed(data, trust)
        for delta in deltas:
            change = denylist.read_signed(delta, trust)
            if not isinstance(current, denylist.DenyList) or not isinstance(change, denylist.Delta):
                return None
            current = current.apply(change)
    except denylist.DenyListError as exc:
        log.warning("%s: the %s list at %s not built from version %s (%s): from the rows", venue.name,
                    kind, denylist.describe_version(version), denylist.describe_version(base), exc)
        return None
    return current.to_signed(key) if current.version == version else None


def _store(db: Session, venue: Venue, kind: str, version: int, data: bytes) -> None:
    """Keep ``data`` as the list's newest snapshot, unless a newer one is kept already."""
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(DenySnapshot).values(venue_id=venue.id, kind=kind, version=version, data=data)
    db.execute(stmt.on_conflict_do_update(
        index_elements=[DenySnapshot.venue_id, DenySnapshot.kind],
        set_={"version": stmt.excluded.version, "data": stmt.excluded.data},
        where=DenySnapshot.version < stmt.excluded.version))


def stored_snapshot(db: Session, venue: Venue, kind: str, version: int) -> bytes | None:
    """An offline-issuer venue's uploaded snapshot of ``version``, if that is the one held (only
    for such a venue: another's row is the hub's own newest build, see ``SnapshotCache``)."""
    return db.scalar(select(DenySnapshot.data).where(DenySnapshot.venue_id == venue.id,
                                                     DenySnapshot.kind == kind,
                                                     DenySnapshot.version == version))


def _uploaded(db: Session, venue: Venue, kind: str, have: int, version: int) -> list[bytes]:
    """What takes a gate from ``have`` to ``version`` among an offline venue's uploaded files: the
    deltas when every one between was uploaded (and there are few), else the snapshot."""
    if version - have <= MAX_DELTAS:
        deltas = db.execute(select(DenyDelta.base, DenyDelta.data)
                            .where(DenyDelta.venue_id == venue.id, DenyDelta.kind == kind,
                                   DenyDelta.base >= have, DenyDelta.base < version)
                            .order_by(DenyDelta.base)).all()
        if [base for base, _ in deltas] == list(range(have, version)):
            return [data for _, data in deltas]
    snapshot = stored_snapshot(db, venue, kind, version)
    return [snapshot] if snapshot is not None else []
