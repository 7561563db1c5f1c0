"""Scans typed or piped on standard input, one per line: for demos and tests.

>>> for scan in StdinScanner():   # printf 'PG1:...\\n' | passgated ...
...     print(scan.text)
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Generator
from typing import BinaryIO

from .base import Scan, ScannerSource, Waker
from .framing import Framer


class StdinScanner(ScannerSource):
    """Lines from ``stream`` (default: standard input; anything with a file descriptor, e.g. a
    pipe), bounded to ``max_len`` bytes. End of input ends the iteration.

    ``max_rate`` bounds accepted lines per second like every source; a simulation replaying a
    file sets ``max_rate=float("inf")`` so that every line is taken, however fast it arrives."""

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        max_len: int = 4096,
        dedupe: float = 0.0,
        max_rate: float = 20.0,
    ) -> None:
        super().__init__("stdin:", dedupe=dedupe, max_rate=max_rate)
        self._stream = stream  # resolved when read: sys.stdin may be replaced until then
        self.framer = Framer("any", max_len=max_len)
        self._waker: Waker | None = None  # one per iteration, for close() to wake it

    def _read(self) -> Generator[Scan, None, None]:
        fd = (self._stream or sys.stdin).fileno()
        self._waker = waker = Waker()
        self._online()
        try:
            while not self._closed.is_set():
                deadline = self.framer.deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([fd, waker], [], [], timeout)
                now = time.monotonic()
                if fd not in ready:
                    yield from self._scans(self.framer.expire(now))
                    continue
                data = os.read(fd, 65536)
                if not data:
                    yield from self._scans(self.framer.flush(now))
                    return
                yield from self._scans(self.framer.feed(data, now))
        finally:
            waker.close()

    def _wake(self) -> None:
        waker = self._waker
        if waker is not None:
            waker.wake()
