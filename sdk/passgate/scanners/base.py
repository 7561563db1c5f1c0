"""``Scan`` and the small base class every scanner source shares.

A source is an iterable of ``Scan`` and a context manager; ``close()`` may be called from any
thread and ends a blocked iteration promptly, which is how the gate daemon stops the thread that
runs each source. Duplicate suppression, flood limiting and the health counters live here, once,
so the sources only turn their input into scans.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from ..decode import utf8_or_none
from .dedupe import Dedupe
from .framing import Frame

log = logging.getLogger("passgate.scanners")


@dataclass(frozen=True, slots=True)
class Scan:
    """One code read by a source. ``bytes`` is the payload as received, ``source`` names the
    source (``serial:/dev/ttyACM0``), ``t`` is ``time.monotonic()`` when the read completed."""

    bytes: bytes
    source: str
    t: float

    @property
    def text(self) -> str | None:
        """The payload as UTF-8 text, or None when it is not UTF-8 (a binary code)."""
        return utf8_or_none(self.bytes)


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
        self._connected = False
        self._counts = {"scans": 0, "dropped": 0, "duplicates": 0}
        self._last_error: str | None = None
        self._last_logged = float("-inf")

    def _read(self) -> Generator[Scan, None, None]:
        raise NotImplementedError

    def _wake(self) -> None:
        """Interrupt a read blocked in another thread (the default relies on read timeouts)."""

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
                    self._counts["duplicates"] += 1
                    continue
                if not self._take_token(scan.t):
                    self._drop(f"flood: more than {self._max_rate:g} scans/s")
                    continue
                self._counts["scans"] += 1
                yield scan
        finally:
            reads.close()  # release the device now, not when the generator is collected

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
        self._counts["dropped"] += 1
        self._last_error = reason
        now = time.monotonic()
        if now - self._last_logged >= 1.0:
            self._last_logged = now
            log.warning("%s: dropped input (%s); %d dropped so far",
                        self.source, reason, self._counts["dropped"])

    def _scans(self, frames: list[Frame]) -> Iterator[Scan]:
        """The good frames as scans; rejected ones are counted and logged."""
        for frame in frames:
            if frame.error:
                self._drop(frame.error)
            else:
                yield Scan(frame.data, self.source, frame.t)

    def health(self) -> dict[str, Any]:
        """A small status dict for the gate's status page (FAULT when not connected)."""
        return {
            "source": self.source,
            "connected": self._connected and not self._closed.is_set(),
            **self._counts,
            "last_error": self._last_error,
        }

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
