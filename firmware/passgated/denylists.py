"""The gate's deny lists: the ones it is configured to hold, kept current, never silently emptied.

A list the gate holds is either current (verified, with an age), stale (older than
``max_age_s``, or lost: version 0) or absent (not configured: nothing to check, never stale). A
local copy that fails its checksum is never taken for an empty fresh list: it is moved to
``damaged/`` and rebuilt from the signed files it was built from (``applied/``); if that fails, the
list stays at version 0, which is stale, and the stale policy rules until an update arrives.

Every update (drop folder or hub) goes through ``apply_signed``: verified against the trust given,
written to the list's local file a step at a time and mapped from it (never a second copy of a
list in memory: see ``passgate.denylist``), swapped in atomically, and its signed file kept in
``applied/`` under a name that sorts by version (``revoked-0000000012.snapshot.pgdl``); a snapshot
makes the files before it unnecessary.

A list's age is how long ago its signer last vouched for it: the newer of its version's signing
time and the newest freshness statement for that very version (``passgate.freshness``, sent by a
hub of protocol 3 with each bundle, kept in ``<kind>.fresh`` across restarts). A statement for
another version says nothing of the list held and is not kept; one that cannot be read back at
start is ignored (the list is then as old as its signature: never fresher than it should be).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from passgate import TrustStore, freshness
from passgate.denylist import (
    DEFAULT_MAX_BYTES,
    KINDS,
    DenyList,
    DenyListError,
    LiveDenyList,
    atomic_write,
    read_header,
    rebuild,
)

from .layout import ListsLayout
from .policy import DenyCheck

log = logging.getLogger("passgated.denylists")
# Ten digits at least: a version with an epoch in its high 32 bits (a restored hub's, a pull's
# --full) has more, and its older files must go too.
_APPLIED = re.compile(r"(?P<kind>[a-z]+)-(?P<version>\d{10,20})\.(?P<type>snapshot|delta)\.pgdl")


class _Absent:
    """A list the gate is not configured to hold: nothing is on it."""

    def __contains__(self, pass_id: object) -> bool:
        return False


ABSENT: DenyCheck = _Absent()


def kinds_in_use(layout: ListsLayout | None, configured: tuple[str, ...] | None, *,
                 hub: bool) -> tuple[str, ...]:
    """The lists a gate holds at start: those configured; by default both with a hub (it serves
    both), and without one each list that has left a trace (a local copy, an applied or damaged
    file). A list not configured is taken on by its first update (see ``DenyLists.auto``)."""
    if configured is not None:
        return configured
    if layout is None:
        return ()
    if hub:
        return KINDS
    return tuple(kind for kind in KINDS if layout.local(kind).exists()
                 or any(layout.applied.glob(f"{kind}-*.pgdl"))
                 or any(layout.damaged.glob(f"{kind}.*")))


class DenyLists:
    """The gate's lists by kind; lookups never wait, updates swap atomically."""

    def __init__(self, layout: ListsLayout | None, kinds: Iterable[str], *, scope: str,
                 trust: Callable[[], TrustStore], max_age_s: float, auto: bool = False,
                 max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], float] = time.time) -> None:
        """``trust`` gives the keys that may sign lists (for rebuilding damaged local copies);
        ``auto``: the lists were not configured, so the first update of another kind adds it."""
        self.layout = layout
        self.auto = auto and layout is not None
        self.scope = scope
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.clock = clock
        self.live: dict[str, LiveDenyList] = {}
        self.damaged: dict[str, str] = {}  # kind -> why it could not be rebuilt (version 0 meanwhile)
        self.fresh: dict[str, freshness.Freshness] = {}  # kind -> newest statement for its version
        # Changes to the lists or statements held, counted after each one is in place, and the oldest
        # vouching time as of a count: a scan's stale check reads it instead of every list's times.
        self._changes = 0
        self._changes_lock = threading.Lock()  # the sync and drop-folder threads both apply lists
        self._oldest: tuple[int, float] = (-1, 0.0)
        kinds = tuple(kinds)
        if kinds and layout is None:
            raise ValueError("deny lists need a directory")
        if layout is not None and kinds:
            layout.make()
            for kind in kinds:
                self.live[kind] = self._open(layout, kind, trust)
                self._read_fresh(layout, kind, trust)

    def _read_fresh(self, layout: ListsLayout, kind: str, trust: Callable[[], TrustStore]) -> None:
        path = layout.fresh(kind)
        if not path.exists():
            return
        try:
            statement = freshness.read(path.read_bytes(), trust())
        except (freshness.FreshnessError, OSError) as exc:
            log.warning("%s list: its freshness statement %s is ignored (%s)", kind, path, exc)
            return
        if statement.applies_to(kind, self.scope, self.live[kind].current.version):
            self.fresh[kind] = statement

    def _open(self, layout: ListsLayout, kind: str, trust: Callable[[], TrustStore]) -> LiveDenyList:
        path = layout.local(kind)
        applied = sorted(layout.applied.glob(f"{kind}-*.pgdl"))
        if path.exists():
            try:
                return LiveDenyList(path, kind=kind, scope=self.scope)
            except (DenyListError, OSError) as exc:
                problem = str(exc)
            layout.damaged.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
            aside = layout.damaged / f"{kind}.{stamp}.pgdl"
            path.replace(aside)
            problem += f" (moved to {aside})"
        elif applied:
            problem = f"{path} is missing"
        else:
            return LiveDenyList(path, kind=kind, scope=self.scope)  # none yet: version 0
        try:
            rebuilt = rebuild(applied, trust(), kind=kind, scope=self.scope, max_bytes=self.max_bytes)
        except (DenyListError, OSError) as exc:
            self.damaged[kind] = f"{problem}; not rebuilt: {exc}"
            log.error("%s list: %s; not rebuilt (%s): the list is stale until an update arrives",
                      kind, problem, exc)
            return LiveDenyList(path, kind=kind, scope=self.scope)
        log.warning("%s list: %s; rebuilt version %d from the signed files in %s",
                    kind, problem, rebuilt.version, layout.applied)
        return LiveDenyList(path, kind=kind, scope=self.scope, initial=rebuilt)

    # -- the decision path --------------------------------------------------------------------
    def lookups(self) -> tuple[DenyCheck, DenyCheck]:
        """(revoked, blocked) for one decision: immutable lists, or ABSENT for a list not held."""
        revoked, blocked = self.live.get("revoked"), self.live.get("blocked")
        return (self._check(revoked), self._check(blocked))

    @staticmethod
    def _check(live: LiveDenyList | None) -> DenyCheck:
        return live.current if live is not None else ABSENT

    def _changed(self) -> None:
        with self._changes_lock:
            self._changes += 1

    def stale(self, now: float) -> bool:
        """Any list held is older than allowed (a lost list is version 0: always stale). The oldest
        vouching time is read again only after a change (counted after it, so one made meanwhile
        by the sync thread is read at the next scan); ``now - oldest`` is the largest of the
        lists' ages, rounding included, so the answer is the same as asking each list."""
        changes = self._changes
        oldest = self._oldest
        if oldest[0] != changes:
            oldest = (changes, min((self._vouched_at(kind, live.current) for kind, live in self.live.items()),
                                   default=math.inf))
            self._oldest = oldest
        return now - oldest[1] > self.max_age_s

    def _vouched_at(self, kind: str, current: DenyList) -> float:
        """When the signer last vouched for ``current``: its signing time, or a later statement's."""
        statement = self.fresh.get(kind)
        if statement is not None and statement.version == current.version and current.version:
            return max(current.issued_at, statement.as_of)
        return current.issued_at

    def age(self, kind: str, now: float) -> float:
        """Seconds since the list of ``kind`` was last vouched for (``stale`` compares these)."""
        return now - self._vouched_at(kind, self.live[kind].current)

    def apply_fresh(self, data: bytes, trust: TrustStore) -> bool:
        """Take a signed freshness statement for a list held (verified against ``trust``, the
        hub's list keys); True when it made the list fresher. Raises ``FreshnessError`` for one
        that does not verify or names another scope; one for another version than the list held
        (the update that brings that version did not apply) or older than the one kept is
        ignored. Kept in ``<kind>.fresh`` (atomically) so a restart does not make a list stale."""
        statement = freshness.read(data, trust)
        if statement.scope != self.scope:
            raise freshness.FreshnessError(f"statement for scope {statement.scope!r}, not {self.scope!r}")
        live = self.live.get(statement.kind)
        if live is None or not statement.applies_to(statement.kind, self.scope, live.current.version):
            return False
        kept = self.fresh.get(statement.kind)
        if kept is not None and kept.version == statement.version and kept.as_of >= statement.as_of:
            return False
        if self.layout is not None:
            atomic_write(self.layout.fresh(statement.kind), [data])
        self.fresh[statement.kind] = statement
        self._changed()
        return True

    # -- updates ------------------------------------------------------------------------------
    def apply_signed(self, source: bytes | Path, trust: TrustStore) -> DenyList:
        """Verify and apply a signed snapshot or delta, then keep its file in ``applied/`` (moved
        there when ``source`` is a path). Raises ``DenyListError``; on error nothing changes.

        The header is verified first to pick the list; the list's own ``apply_signed`` verifies
        the file again as it reads it (a file changed in between is refused by the list)."""
        header = read_header(source, trust, max_bytes=self.max_bytes)
        live = self.live.get(header.kind)
        if live is None:
            if not self.accepts(header.kind):
                raise DenyListError(f"this gate holds no {header.kind} list ([denylist] lists)")
            assert self.layout is not None
            live = LiveDenyList(self.layout.local(header.kind), kind=header.kind, scope=self.scope)
        new = live.apply_signed(source, trust, max_bytes=self.max_bytes)
        self.live[header.kind] = live  # held from now on: it can go stale
        self._changed()
        self.damaged.pop(header.kind, None)
        if self.layout is not None:
            self._keep(source, header.kind, header.is_delta, new.version)
        return new

    def _keep(self, source: bytes | Path, kind: str, is_delta: bool, version: int) -> None:
        layout = self.layout
        assert layout is not None
        kind_of_file = "delta" if is_delta else "snapshot"
        target = layout.applied / f"{kind}-{version:010d}.{kind_of_file}.pgdl"
        if isinstance(source, Path):
            source.replace(target)
        else:
            atomic_write(target, [source])
        if kind_of_file == "snapshot":  # the files before it cannot help a rebuild any more
            for old in layout.applied.glob(f"{kind}-*.pgdl"):
                match = _APPLIED.fullmatch(old.name)
                if match and int(match["version"]) < version:
                    old.unlink(missing_ok=True)

    def accepts(self, kind: str) -> bool:
        """Whether an update of this kind can apply here."""
        return kind in self.live or (self.auto and kind in KINDS)

    # -- status -------------------------------------------------------------------------------
    def versions(self) -> dict[str, int]:
        return {kind: live.current.version for kind, live in self.live.items()}

    def status(self, now: float) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for kind, live in self.live.items():
            current = live.current
            age = now - self._vouched_at(kind, current)
            out[kind] = {"version": current.version, "entries": len(current),
                         "age_s": round(age, 1) if current.version else None,
                         "stale": age > self.max_age_s,
                         "damaged": self.damaged.get(kind)}
        return out
