"""Deny-list updates by file: signed snapshots and deltas dropped into ``<denylist dir>/incoming``
(by rsync, a file share, a USB stick or ``passgated denylist add``) are verified against the gate's
trust store and applied in version order, off the control loop (``scan_once`` is a worker's step).

This is how a gate without a hub keeps its lists current; with a hub the sync client does the
same through HTTP. A file that applied is kept in ``applied/`` (see ``passgated.denylists``); one
that can never apply (bad signature, unknown key, a key not trusted for the list's scope such as a
pass issuer's, wrong list, older than the gate's version, larger than ``[denylist] max_file_mb``)
moves to ``rejected/`` with a ``.why`` note beside it; a delta that skips ahead waits in
``incoming/`` for the ones before it. A file is judged by its size and header
before its body is read: a giant or hostile file costs neither time nor memory.

A signed freshness statement (``KIND.fresh``, as ``passgate pretix pull`` writes one with every pull)
keeps a list fresh without a new version: it is taken once the lists' updates in the same scan have
applied, waits while it speaks of a version the gate does not hold yet, and is dropped when it speaks
of an older one (it says nothing of the list held).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from passgate import TrustStore, freshness
from passgate.denylist import DenyListError, SequenceError, SignedHeader, read_header

from .denylists import DenyLists
from .layout import FRESH_SUFFIX, ListsLayout

log = logging.getLogger("passgated.droplists")
SCAN_EVERY_S = 5.0
SETTLE_S = 2.0  # a file changed more recently may still be arriving (a plain cp writes in place)


class ListDropFolder:
    """Watches ``incoming/`` and applies what arrives to the gate's lists."""

    def __init__(self, layout: ListsLayout, lists: DenyLists, trust: Callable[[], TrustStore],
                 wall: Callable[[], float] = time.time) -> None:
        self.layout = layout
        layout.make()
        self.lists = lists
        self.trust = trust
        self.wall = wall
        self._waiting: set[str] = set()  # deltas already reported as waiting (log once)

    def scan_once(self) -> dict[str, str]:
        """Apply every file that can be applied now; returns ``{file name: outcome}``."""
        trust = self.trust()
        pending: list[tuple[tuple[str, int, bool], Path, SignedHeader]] = []
        statements: list[Path] = []
        outcomes: dict[str, str] = {}
        now = self.wall()
        for path in sorted(self.layout.incoming.glob("*")):
            if not path.is_file() or path.name.startswith(".") or path.suffix == ".partial":
                continue  # a copy in progress (rsync's dot-files, atomic_write's .partial)
            if now - path.stat().st_mtime < SETTLE_S:
                continue
            if path.suffix == FRESH_SUFFIX:
                statements.append(path)
                continue
            try:
                # The size, the header and its signature only: the body is read when it applies.
                header = read_header(path, trust, max_bytes=self.lists.max_bytes)
            except (DenyListError, OSError) as exc:
                outcomes[path.name] = self._reject(path, str(exc))
                continue
            if not self.lists.accepts(header.kind):
                outcomes[path.name] = self._reject(path, f"no {header.kind} list on this gate")
                continue
            # snapshots first (False sorts before True), then deltas in version order
            pending.append(((header.kind, header.version, header.is_delta), path, header))
        for _, path, header in sorted(pending, key=lambda item: item[0]):
            outcomes[path.name] = self._apply(path, header, trust)
        for path in statements:  # after the updates: a statement may speak of the version just applied
            outcomes[path.name] = self._fresh(path, trust)
        return outcomes

    def _fresh(self, path: Path, trust: TrustStore) -> str:
        try:
            if path.stat().st_size > freshness.MAX_BYTES:
                return self._reject(path, f"larger than a freshness statement ({freshness.MAX_BYTES} bytes)")
            data = path.read_bytes()
            statement = freshness.read(data, trust)
            live = self.lists.live.get(statement.kind)
            if live is not None and statement.version > live.current.version:
                return "waiting"  # the update that brings its version has not applied yet
            fresher = self.lists.apply_fresh(data, trust)
        except (freshness.FreshnessError, OSError) as exc:
            return self._reject(path, str(exc))
        path.unlink(missing_ok=True)
        if fresher:
            log.info("%s list: vouched for as of %s by %s", statement.kind, statement.as_of, path.name)
        return "applied" if fresher else "ignored"

    def step(self) -> float:
        self.scan_once()
        return SCAN_EVERY_S  # read each time: tests shorten it

    def _apply(self, path: Path, header: SignedHeader, trust: TrustStore) -> str:
        try:
            new = self.lists.apply_signed(path, trust)
        except SequenceError as exc:
            live = self.lists.live.get(header.kind)
            current = live.current.version if live is not None else 0
            if header.base is not None and header.base > current:
                if path.name not in self._waiting:
                    self._waiting.add(path.name)
                    log.warning("%s: waiting for the deltas before it (%s)", path.name, exc)
                return "waiting"
            return self._reject(path, str(exc))
        except (DenyListError, OSError) as exc:
            return self._reject(path, str(exc))
        self._waiting.discard(path.name)
        log.info("%s list now version %d (%d entries) from %s", new.kind, new.version, len(new), path.name)
        return "applied"

    def _reject(self, path: Path, why: str) -> str:
        log.error("%s rejected: %s", path.name, why)
        self.layout.rejected.mkdir(parents=True, exist_ok=True)
        (self.layout.rejected / f"{path.name}.why").write_text(why + "\n")
        path.replace(self.layout.rejected / path.name)
        return "rejected"
