"""USB-CDC and RS-232 scanners through pyserial (``pip install 'passgate[serial]'``).

>>> with SerialScanner("/dev/ttyACM0", framing="cr") as scanner:
...     for scan in scanner:
...         print(scan.text)

The port may be any pyserial URL (``loop://``, ``socket://host:port``, ``rfc2217://``). An
unplugged scanner is an outage, not an error: the source logs it, reopens the same path every
``retry`` seconds (a re-created ``/dev/serial/by-id`` symlink or a new pty is picked up), and
keeps counting. ``health().connected`` is False meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

from ..decode import optional_import
from .base import Scan, ScannerSource, log
from .framing import Framer

READ_TIMEOUT = 0.05  # bounds how long close() waits when the port cannot cancel a read


class SerialScanner(ScannerSource):
    """Scans from a serial port: ``baud`` (115200), ``framing`` (``any``, ``cr``, ``lf``,
    ``crlf`` or ``gap``), ``gap_ms`` (silence that ends a line; 50 with ``framing="gap"``),
    ``max_len`` bytes a line, lines under ``min_len`` bytes (8) dropped as line noise (set 1 for
    short 1-D codes), AIM ids (``]Q1``) stripped. ``dedupe`` seconds (1.0) drops a scanner's
    repeats of a code still held under it."""

    def __init__(
        self,
        port: str,
        *,
        baud: int = 115200,
        framing: str = "any",
        gap_ms: float | None = None,
        max_len: int = 4096,
        min_len: int = 8,
        strip_aim: bool = True,
        dedupe: float = 1.0,
        retry: float = 0.2,
        max_rate: float = 20.0,
    ) -> None:
        super().__init__(f"serial:{port}", dedupe=dedupe, max_rate=max_rate)
        self._serial = optional_import("serial", "serial", "pyserial")
        self.port = port
        self.baud = baud
        self.retry = retry
        self.framer = Framer(
            framing,
            gap=gap_ms / 1000 if gap_ms is not None else None,
            max_len=max_len,
            min_len=min_len,
            strip_aim=strip_aim,
        )
        gap = self.framer.gap
        self._timeout = min(READ_TIMEOUT, gap / 2) if gap else READ_TIMEOUT
        self._port: Any = None
        self._port_lock = threading.Lock()  # close() from another thread vs the reader

    def _read(self) -> Generator[Scan, None, None]:
        lost_at: float | None = None
        try:
            while not self._closed.is_set():
                if self._port is None:
                    lost_at = self._connect(lost_at)
                    if self._port is None:
                        self._closed.wait(self.retry)
                        continue
                try:
                    port = self._port
                    data = port.read(port.in_waiting or 1)
                except OSError as exc:  # SerialException is an OSError
                    lost_at = time.monotonic()
                    self._lost(exc)
                    continue
                now = time.monotonic()
                yield from self._scans(
                    self.framer.feed(data, now) if data else self.framer.expire(now)
                )
        finally:
            self._disconnect()

    def _connect(self, lost_at: float | None) -> float | None:
        """Open the port; return when the outage began (None once connected)."""
        try:
            port = self._serial.serial_for_url(
                self.port, baudrate=self.baud, timeout=self._timeout, do_not_open=True
            )
            port.open()
        except OSError as exc:  # a bad URL or baud (ValueError) is a configuration error
            if self._error(str(exc)):
                log.warning("%s: cannot open (%s); retrying every %gs", self.source, exc, self.retry)
            return lost_at if lost_at is not None else time.monotonic()
        with self._port_lock:
            if self._closed.is_set():
                port.close()
                return lost_at
            self._port = port
        self._online()
        if lost_at is not None:
            self._count("reconnects")
            log.warning("%s: reconnected after %.1fs", self.source, time.monotonic() - lost_at)
        return None

    def _lost(self, exc: BaseException) -> None:
        log.warning("%s: scanner lost (%s); reconnecting", self.source, exc)
        self._offline(str(exc))
        self.framer.reset()
        self._disconnect()

    def _disconnect(self) -> None:
        self._offline()
        with self._port_lock:
            port, self._port = self._port, None
        if port is not None:
            port.close()

    def _wake(self) -> None:
        with self._port_lock:
            if self._port is not None and hasattr(self._port, "cancel_read"):
                self._port.cancel_read()
