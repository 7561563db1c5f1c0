"""A list's snapshot is built once for the hub, not once a worker: the newest one built is kept in
the database (``DenySnapshot``), a worker that keeps no earlier one builds the next from it and the
signed deltas since, and workers asked at once take turns (on SQLite, as its writers do). A stored
row that is older, newer, of another epoch or damaged falls back to what is right; an offline
issuer's uploaded snapshot is served as before. A ``SnapshotCache`` of its own stands for a worker
process (its own memory; each thread its own session)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from passgate import TrustStore, denylist, generate_private_key
from passgate.keys import public_pem
from passgate.wire import KeyPurpose
from passgate_hub import denylists, offline, ops
from passgate_hub.models import DenySnapshot

from .server import HubServer

KIND = "blocked"


def new_ids(n: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(n)]


def change(hub: HubServer, ids: Iterable[str], remove: bool = False, venue: str = "arena") -> None:
    with hub.session() as s:
        ops.deny(s, ops.get_venue(s, venue), KIND, list(ids), remove=remove, external=True)
        s.commit()


def arena(hub: HubServer) -> None:
    with hub.session() as s:
        ops.create_venue(s, "arena")
        s.commit()


def current(hub: HubServer) -> tuple[int, int]:
    with hub.session() as s:
        return denylists.current_versions(s, ops.get_venue(s, "arena"))[KIND]


def ask(hub: HubServer, cache: denylists.SnapshotCache, at: tuple[int, int] | None = None) -> bytes:
    """What a worker answers for the list at ``at`` (default: the newest), in a request that
    commits as a sync round does."""
    with hub.session() as s:
        venue = ops.get_venue(s, "arena")
        data = cache.get(s, venue, KIND, *(at or denylists.current_versions(s, venue)[KIND]))
        s.commit()
    return data


def expected(hub: HubServer, ids: Iterable[str], at: tuple[int, int]) -> bytes:
    """The signed snapshot of ``ids`` at ``at``, made here (Ed25519 signs the same bytes twice)."""
    with hub.session() as s:
        key = denylists.signing_key(s, ops.get_venue(s, "arena"))
    return denylist.DenyList.from_ids([bytes.fromhex(i) for i in ids], kind=KIND, scope="arena",
                                      version=at[0], issued_at=at[1]).to_signed(key)


def stored(hub: HubServer, venue: str = "arena") -> tuple[int, bytes] | None:
    with hub.session() as s:
        row = s.execute(select(DenySnapshot.version, DenySnapshot.data).where(
            DenySnapshot.venue_id == ops.get_venue(s, venue).id, DenySnapshot.kind == KIND)).one_or_none()
    return None if row is None else (row.version, row.data)


def set_stored(hub: HubServer, version: int, data: bytes) -> None:
    with hub.session() as s:
        s.execute(update(DenySnapshot).where(DenySnapshot.venue_id == ops.get_venue(s, "arena").id,
                                             DenySnapshot.kind == KIND).values(version=version, data=data))
        s.commit()


class Builds:
    """Counts the builds from the rows and from an earlier snapshot, and the most sessions open
    for builds at once (each its connection, waiting or building); ``slow`` holds each build up."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, slow: float = 0.0,
                 rows: Callable[[], None] | None = None) -> None:
        self.from_rows = self.from_earlier = self.sessions = self.peak = 0
        self._lock = threading.Lock()
        active, from_earlier, building = denylists._active, denylists._from_earlier, denylists._building

        def counted_active(*args: Any, at: int | None = None, **kwargs: Any) -> set[str]:
            if at is not None:  # a snapshot's build (a change reads the rows too)
                self._count("from_rows", slow)
                if rows is not None:
                    rows()
            return active(*args, at=at, **kwargs)

        def counted_from_earlier(*args: Any) -> bytes | None:
            self._count("from_earlier", slow)
            return from_earlier(*args)

        @contextmanager
        def counted_building(*args: Any) -> Iterator[Session]:
            with self._lock:
                self.sessions += 1
                self.peak = max(self.peak, self.sessions)
            try:
                with building(*args) as session:
                    yield session
            finally:
                with self._lock:
                    self.sessions -= 1

        monkeypatch.setattr(denylists, "_active", counted_active)
        monkeypatch.setattr(denylists, "_from_earlier", counted_from_earlier)
        monkeypatch.setattr(denylists, "_building", counted_building)

    def _count(self, name: str, slow: float) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
        time.sleep(slow)


def no_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: object, **kwargs: object) -> set[str]:
        raise AssertionError("built from the rows")

    monkeypatch.setattr(denylists, "_active", refused)


def test_a_new_worker_builds_from_the_stored_snapshot_and_the_deltas(hub: HubServer,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    arena(hub)
    ids = new_ids(50)
    change(hub, ids[:30])
    first = ask(hub, denylists.SnapshotCache())
    assert stored(hub) == (current(hub)[0], first)
    assert first == expected(hub, ids[:30], current(hub))
    change(hub, ids[30:])
    change(hub, ids[:10], remove=True)
    newest = current(hub)
    no_rows(monkeypatch)
    built = ask(hub, denylists.SnapshotCache())  # a new worker: nothing in memory
    assert built == expected(hub, ids[10:], newest)  # the bytes a build from the rows signs
    assert stored(hub) == (newest[0], built)
    with hub.session() as s:
        trust = TrustStore()
        trust.add(denylists.signing_key(s, ops.get_venue(s, "arena")).public_key(),
                  purpose=KeyPurpose.DENYLIST, scope="arena")
    listed = denylist.read_signed(built, trust)
    assert isinstance(listed, denylist.DenyList) and (listed.version, listed.issued_at) == newest
    assert [bytes.fromhex(i) in listed for i in ids] == [False] * 10 + [True] * 40
    assert ask(hub, denylists.SnapshotCache()) == built  # the stored one, as it is


def test_workers_asked_at_once_build_once(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four workers of two threads each: one build from the rows for the list's first snapshot, one
    from it and the deltas for the next. Each build takes a while, so all are asking meanwhile;
    a worker's second thread waits for its first instead of taking a connection to wait with."""
    arena(hub)
    ids = new_ids(40)
    change(hub, ids[:20])
    builds = Builds(monkeypatch, slow=0.3)
    workers = [denylists.SnapshotCache() for _ in range(4)]

    def all_at_once() -> set[bytes]:
        start, answers = threading.Barrier(8), []

        def one(cache: denylists.SnapshotCache) -> None:
            start.wait()
            answers.append(ask(hub, cache))

        threads = [threading.Thread(target=one, args=(cache,)) for cache in workers * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(answers) == 8
        return set(answers)

    assert all_at_once() == {expected(hub, ids[:20], current(hub))}
    assert (builds.from_rows, builds.from_earlier) == (1, 0)
    change(hub, ids[20:])
    workers = [denylists.SnapshotCache() for _ in range(4)]  # restarted: nothing in memory
    assert all_at_once() == {expected(hub, ids, current(hub))}
    assert (builds.from_rows, builds.from_earlier) == (1, 1)
    assert builds.peak <= len(workers)


def test_a_block_during_a_build_neither_waits_nor_joins_the_snapshot(hub: HubServer,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A build holds no lock on the list's row: an operator's block goes through meanwhile (on
    PostgreSQL; on SQLite the request building holds the one write lock), and the snapshot of
    the version asked for does not hold it."""
    arena(hub)
    ids = new_ids(11)
    change(hub, ids[:10])
    before = current(hub)
    postgresql = hub.engine.dialect.name == "postgresql"
    building, blocked = threading.Event(), threading.Event()
    block_came_first: list[bool] = []

    def held_up() -> None:
        building.set()
        # PostgreSQL: the build waits for the block to commit (it must not be waiting for the
        # build); SQLite: the block waits for the build's write lock, so the build goes on.
        block_came_first.append(blocked.wait(30 if postgresql else 1.5))

    builds = Builds(monkeypatch, rows=held_up)
    answer: list[bytes] = []
    worker = threading.Thread(target=lambda: answer.append(ask(hub, denylists.SnapshotCache(), before)))
    worker.start()
    assert building.wait(10)
    change(hub, ids[10:])
    blocked.set()
    worker.join(timeout=60)
    assert builds.from_rows == 1
    assert answer == [expected(hub, ids[:10], before)]
    assert stored(hub) == (before[0], answer[0])
    if postgresql:
        assert block_came_first == [True], "the block waited for the build"


def test_an_older_stored_snapshot_is_built_on_and_a_newer_one_kept(hub: HubServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored row set back (a backup's) is the base of the next build; asked for a version older
    than the stored one, a worker builds it from the rows and leaves the newer one stored."""
    arena(hub)
    ids = new_ids(30)
    change(hub, ids[:10])
    v1 = current(hub)
    s1 = ask(hub, denylists.SnapshotCache())
    change(hub, ids[10:20])
    v2 = current(hub)
    change(hub, ids[20:])
    v3 = current(hub)
    s3 = ask(hub, denylists.SnapshotCache())
    assert stored(hub) == (v3[0], s3)
    set_stored(hub, v1[0], s1)
    builds = Builds(monkeypatch)
    assert ask(hub, denylists.SnapshotCache()) == s3 == expected(hub, ids, v3)
    assert (builds.from_rows, builds.from_earlier) == (0, 1)
    assert stored(hub) == (v3[0], s3)
    assert ask(hub, denylists.SnapshotCache(), v2) == expected(hub, ids[:20], v2)
    assert (builds.from_rows, builds.from_earlier) == (1, 1)
    assert stored(hub) == (v3[0], s3)  # replaced only by a newer one


def test_a_stored_snapshot_of_another_epoch_or_damaged_is_not_built_on(
        hub: HubServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    arena(hub)
    ids = new_ids(30)
    change(hub, ids[:10])
    ask(hub, denylists.SnapshotCache())
    old = current(hub)
    with hub.session() as s:  # a gate holds a version this hub never reached: a new epoch
        venue = ops.get_venue(s, "arena")
        _, changed = denylists.refreshed_versions(s, venue, {KIND: denylist.make_version(1)}, by_age=False)
        s.commit()
    epoch = current(hub)
    assert changed and denylist.epoch_of(epoch[0]) > denylist.epoch_of(old[0])
    builds = Builds(monkeypatch)
    assert ask(hub, denylists.SnapshotCache()) == expected(hub, ids[:10], epoch)
    assert (builds.from_rows, builds.from_earlier) == (1, 0)
    assert stored(hub) == (epoch[0], expected(hub, ids[:10], epoch))

    change(hub, ids[10:20])
    later = stored(hub)
    assert later is not None
    damaged = bytearray(later[1])
    damaged[-1] ^= 1
    set_stored(hub, later[0], bytes(damaged))
    assert ask(hub, denylists.SnapshotCache()) == expected(hub, ids[:20], current(hub))
    assert (builds.from_rows, builds.from_earlier) == (2, 1)
    assert "from the rows" in caplog.text
    assert stored(hub) == (current(hub)[0], expected(hub, ids[:20], current(hub)))


def test_an_offline_venues_uploaded_snapshot_is_served_as_uploaded(hub: HubServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Next to an online venue whose snapshot the hub built and stored, an offline issuer's venue
    is served its upload, byte for byte; the hub builds and stores nothing for it."""
    arena(hub)
    change(hub, new_ids(5))
    ask(hub, denylists.SnapshotCache())
    key = generate_private_key()
    with hub.session() as s:
        ops.create_venue(s, "expo", offline=True, denylist_public_pem=public_pem(key).decode())
        s.commit()
    change(hub, new_ids(5), venue="expo")
    with hub.session() as s:
        venue = ops.get_venue(s, "expo")
        snapshot, delta = offline.pending(s, venue, KIND).sign(key)
        offline.accept_signed(s, venue, snapshot)
        offline.accept_signed(s, venue, delta)
        s.commit()
    change(hub, new_ids(2), venue="expo")  # pending: not signed yet
    uploaded = stored(hub, "expo")
    assert uploaded is not None and uploaded[1] == snapshot
    no_rows(monkeypatch)
    monkeypatch.setattr(denylists, "_store", lambda *args: pytest.fail("stored a build"))
    cache = denylists.SnapshotCache()
    with hub.session() as s:
        venue = ops.get_venue(s, "expo")
        version, issued_at = denylists.current_versions(s, venue)[KIND]
        assert version == uploaded[0]
        assert cache.get(s, venue, KIND, version, issued_at) == snapshot
        with pytest.raises(LookupError, match="uploaded"):
            cache.get(s, venue, KIND, version + 1, issued_at)
        s.commit()
    assert stored(hub, "expo") == uploaded
