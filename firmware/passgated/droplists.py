"""Deny-list updates by file: signed snapshots and deltas dropped into ``<denylist dir>/incoming``
(by rsync, a file share, a USB stick or ``passgated denylist add``) are verified against the gate's
trust store and applied in version order, off the control loop.

This is how a gate without a hub keeps its lists current; with a hub the sync client does the
same through HTTP. A file that applied moves to ``applied/``; one that can never apply (bad
signature, unknown key, wrong list, older than the gate's version) moves to ``rejected/`` with a
``.why`` note beside it; a delta that skips ahead waits in ``incoming/`` for the ones before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from passgate import TrustStore
from passgate.denylist import (
    Delta,
    DenyList,
    DenyListError,
    LiveDenyList,
    SequenceError,
    read_signed,
)

log = logging.getLogger("passgated.droplists")
SCAN_EVERY_S = 5.0
SETTLE_S = 2.0  # a file changed more recently may still be arriving (a plain cp writes in place)


class ListDropFolder:
    """Watches ``directory/incoming`` and applies what arrives to the gate's live lists."""

    def __init__(self, directory: Path, lists: dict[str, LiveDenyList],
                 trust: Callable[[], TrustStore]) -> None:
        self.incoming = directory / "incoming"
        self.applied = directory / "applied"
        self.rejected = directory / "rejected"
        for folder in (self.incoming, self.applied, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        self.lists = lists
        self.trust = trust
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting: set[str] = set()  # deltas already reported as waiting (log once)

    def scan_once(self) -> dict[str, str]:
        """Apply every file that can be applied now; returns ``{file name: outcome}``."""
        trust = self.trust()
        pending: list[tuple[tuple[str, int, bool], Path, DenyList | Delta]] = []
        outcomes: dict[str, str] = {}
        now = time.time()
        for path in sorted(self.incoming.glob("*")):
            if not path.is_file() or path.name.startswith(".") or path.suffix == ".partial":
                continue  # a copy in progress (rsync's dot-files, atomic_write's .partial)
            if now - path.stat().st_mtime < SETTLE_S:
                continue
            try:
                update = read_signed(path, trust)
            except (DenyListError, OSError) as exc:
                outcomes[path.name] = self._reject(path, str(exc))
                continue
            if update.kind not in self.lists:
                outcomes[path.name] = self._reject(path, f"no {update.kind} list on this gate")
                continue
            version = update.base + 1 if isinstance(update, Delta) else update.version
            # snapshots first (0), then deltas in version order (1)
            pending.append(((update.kind, version, isinstance(update, Delta)), path, update))
        for _, path, update in sorted(pending, key=lambda item: item[0]):
            outcomes[path.name] = self._apply(path, update, trust)
        return outcomes

    def _apply(self, path: Path, update: DenyList | Delta, trust: TrustStore) -> str:
        kind = update.kind
        live = self.lists[kind]
        try:
            new = live.apply_signed(path, trust)
        except SequenceError as exc:
            if isinstance(update, Delta) and update.base > live.current.version:
                if path.name not in self._waiting:
                    self._waiting.add(path.name)
                    log.warning("%s: waiting for the deltas before it (%s)", path.name, exc)
                return "waiting"
            return self._reject(path, str(exc))
        except DenyListError as exc:
            return self._reject(path, str(exc))
        self._waiting.discard(path.name)
        path.replace(self.applied / path.name)
        log.info("%s list now version %d (%d entries) from %s", kind, new.version, len(new), path.name)
        return "applied"

    def _reject(self, path: Path, why: str) -> str:
        log.error("%s rejected: %s", path.name, why)
        (self.rejected / f"{path.name}.why").write_text(why + "\n")
        path.replace(self.rejected / path.name)
        return "rejected"

    # -- background ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="denylist-drop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SCAN_EVERY_S):
            try:
                self.scan_once()
            except Exception:  # a bad file must never stop the watcher
                log.exception("deny-list drop folder")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
