"""``Scan``, ``ScannerHealth`` and the base class every scanner source shares: the contract between
a source and whoever reads it (the gate daemon, an integrator's program).

A source is an iterable of ``Scan`` and a context manager; ``close()`` may be called from any
thread and ends a blocked iteration promptly, which is how the gate daemon stops the thread that
runs each source. A subclass only turns its input into scans: it implements ``_read()`` and reports
what happens to its device through methods (``_online()``, ``_offline(error)``, ``_count(name)``,
``_set_readers(...)``), never by writing shared fields. Duplicate suppression, flood limiting and the
health counters live here, once. ``health()`` is a small typed record; ``add_listener(f)`` hears of
every change in it that matters to a gate (connected, a reader's state), so a gate does not have to
poll to notice a lost reader.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from types import MappingProxyType, TracebackType
from typing import Any, Self

from ..decode import utf8_or_none
from ..wire import Direction
from .dedupe import Dedupe
from .framing import Frame

log = logging.getLogger("passgate.scanners")


class ScanKind(StrEnum):
    """What a scan holds: a code's payload (a QR code's bytes), a card number (a reader's card read:
    no signature, so a gate refuses it), or a payload whose parts did not all arrive (refused)."""

    CODE = "code"
    CARD = "card"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True, slots=True)
class Scan:
    """One read by a source. ``bytes`` is the payload as received, ``source`` names the source
    (``serial:/dev/ttyACM0``), ``t`` is ``time.monotonic()`` when the read completed. ``reader``
    names the reader on a source that has several (an OSDP bus: ``osdp:/dev/ttyUSB0#2``; else the
    source), ``direction`` is set when the reader knows which way it faces (None: the direction the
    gate's config gives the source), ``detail`` says what went wrong with an ``INCOMPLETE`` one."""

    bytes: bytes
    source: str
    t: float
    reader: str = ""
    direction: Direction | None = None
    kind: ScanKind = ScanKind.CODE
    detail: str = ""

    @property
    def text(self) -> str | None:
        """The payload as UTF-8 text, or None when it is not UTF-8 (a binary code)."""
        return utf8_or_none(self.bytes)

    @property
    def origin(self) -> str:
        """The reader it came from (the source when the source is one reader)."""
        return self.reader or self.source


@dataclass(frozen=True, slots=True)
class ReaderHealth:
    """One reader of a source that has several (the readers of an OSDP bus)."""

    name: str
    connected: bool
    secure: bool = False  # an encrypted, authenticated link to the reader
    tamper: bool = False
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class ScannerHealth:
    """What a gate needs to know of a source: is it there, what went wrong last, what it counted.
    ``counters`` holds a source's own counts (``reconnects``, ``frames``...)."""

    source: str
    connected: bool
    last_error: str | None = None
    scans: int = 0
    dropped: int = 0
    duplicates: int = 0
    counters: MappingProxyType[str, int] = field(default_factory=lambda: MappingProxyType({}))
    readers: tuple[ReaderHealth, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for status pages."""
        data = {name: getattr(self, name) for name in ("source", "connected", "last_error", "scans",
                                                        "dropped", "duplicates")}
        data.update(self.counters)
        if self.readers:
            data["readers"] = [asdict(reader) for reader in self.readers]
        return data


class ScannerSource:
    """Base of all sources: subclasses implement ``_read()`` (a generator of raw scans, closed
    as soon as iteration stops) and may override ``_wake()`` (interrupt a blocked read from
    another thread).

    ``dedupe`` drops a payload seen again within that many seconds (0 disables it);
    ``max_rate`` bounds accepted scans per second so a flooding scanner cannot starve the gate.
    """

    def __init__(self, source: str, *, dedupe: float = 0.0, max_rate: float = 20.0) -> None:
        self.source = source
        self._dedupe = Dedupe(dedupe) if dedupe > 0 else None
        self._max_rate = max_rate
        self._tokens = max_rate
        self._refilled = time.monotonic()
        self._closed = threading.Event()
        self._lock = threading.Lock()  # the health fields: written by the reading thread, read by any
        self.__connected = False
        self.__counts = {"scans": 0, "dropped": 0, "duplicates": 0}
        self.__counters: dict[str, int] = {}
        self.__last_error: str | None = None
        self.__readers: tuple[ReaderHealth, ...] = ()
        self.__listeners: list[Callable[[ScannerSource], None]] = []
        self._last_logged = float("-inf")

    # -- what a subclass implements -------------------------------------------------------------
    @classmethod
    def check_target(cls, target: str) -> None:
        """Refuse a malformed target with a ``ValueError`` saying why, without opening anything:
        ``check_scanner`` (and so ``passgated check-config``) calls it."""

    @classmethod
    def check_files(cls, target: str, options: Mapping[str, Any]) -> None:
        """Refuse what the source would find wrong on disk when it starts (a missing or unsafe keys
        file) with a ``ValueError`` saying why: ``passgated check-config`` calls it."""

    @classmethod
    def target_directions(cls, target: str) -> frozenset[Direction]:
        """The directions a target gives its readers (an OSDP bus's ``addr=1:entry``): a gate
        checks that it serves them."""
        return frozenset()

    def _read(self) -> Generator[Scan, None, None]:
        raise NotImplementedError

    def _wake(self) -> None:
        """Interrupt a read blocked in another thread (the default relies on read timeouts)."""

    # -- what a subclass reports ----------------------------------------------------------------
    def _online(self) -> None:
        """The device is open and reading."""
        self._set_connected(True)

    def _offline(self, error: str | None = None) -> None:
        """The device is gone (or not open yet); ``error`` says why, when known."""
        if error is not None:
            self._error(error)
        self._set_connected(False)

    def _error(self, error: str) -> bool:
        """Note what went wrong last; True when it differs from the last one (worth a log line)."""
        with self._lock:
            changed = error != self.__last_error
            self.__last_error = error
        return changed

    def _count(self, name: str, n: int = 1) -> None:
        """Add to one of the source's own counters (shown in ``health().counters``)."""
        with self._lock:
            self.__counters[name] = self.__counters.get(name, 0) + n

    def _set_readers(self, readers: tuple[ReaderHealth, ...]) -> None:
        """A source with several readers reports each one; it is connected when all are."""
        with self._lock:
            changed = readers != self.__readers
            self.__readers = readers
        if changed:
            self._set_connected(bool(readers) and all(reader.connected for reader in readers), force=True)

    def _set_connected(self, connected: bool, *, force: bool = False) -> None:
        with self._lock:
            changed = connected != self.__connected
            self.__connected = connected
        if changed or force:
            self._changed()

    def _changed(self) -> None:
        for listener in list(self.__listeners):
            try:
                listener(self)
            except Exception:  # a listener's bug must not stop the reading thread
                log.exception("%s: health listener failed", self.source)

    # -- for readers of the source --------------------------------------------------------------
    def add_listener(self, listener: Callable[[ScannerSource], None]) -> None:
        """Call ``listener(source)`` (from the source's thread) when its health changes in a way a
        gate acts on: connected or not, a reader's state. Keep it short: wake someone up."""
        self.__listeners.append(listener)

    def health(self) -> ScannerHealth:
        """The source's health now (not connected once closed)."""
        with self._lock:
            return ScannerHealth(
                source=self.source,
                connected=self.__connected and not self._closed.is_set(),
                last_error=self.__last_error,
                counters=MappingProxyType(dict(self.__counters)),
                readers=self.__readers,
                **self.__counts,
            )

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __iter__(self) -> Iterator[Scan]:
        reads = self._read()
        try:
            for scan in reads:
                if self._closed.is_set():
                    break
                if self._dedupe is not None and self._dedupe.seen(scan.bytes, scan.t):
                    self.__counts["duplicates"] += 1
                    continue
                if not self._take_token(scan.t):
                    self._drop(f"flood: more than {self._max_rate:g} scans/s")
                    continue
                self.__counts["scans"] += 1
                yield scan
        finally:
            reads.close()  # release the device now, not when the generator is collected
            self._set_connected(False)  # a source's iteration ended: it is not connected

    def _take_token(self, now: float) -> bool:
        if math.isinf(self._max_rate):
            return True  # no limit (a file or a pipe, not a scanner)
        # A scan stamped before the last refill (a source's own clock) refills nothing.
        self._tokens = min(self._max_rate, self._tokens + max(0.0, now - self._refilled) * self._max_rate)
        self._refilled = max(self._refilled, now)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _drop(self, reason: str) -> None:
        """Count and log a rejected input; logging is limited to one line a second."""
        self.__counts["dropped"] += 1
        self._error(reason)
        now = time.monotonic()
        if now - self._last_logged >= 1.0:
            self._last_logged = now
            log.warning("%s: dropped input (%s); %d dropped so far",
                        self.source, reason, self.__counts["dropped"])

    def _scans(self, frames: list[Frame]) -> Iterator[Scan]:
        """The good frames as scans; rejected ones are counted and logged."""
        for frame in frames:
            if frame.error:
                self._drop(frame.error)
            else:
                yield Scan(frame.data, self.source, frame.t)

    def close(self) -> None:
        """Stop the source; safe from any thread, and idempotent."""
        self._closed.set()
        self._wake()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source}>"


class Waker:
    """A self-pipe: ``select`` on ``fileno()`` next to a device, and ``wake()`` from another
    thread makes that select return at once (no polling)."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self._r

    def wake(self) -> None:
        with self._lock:
            if self._w >= 0:
                os.write(self._w, b"x")

    def close(self) -> None:
        with self._lock:
            if self._w >= 0:
                os.close(self._r)
                os.close(self._w)
                self._r = self._w = -1
