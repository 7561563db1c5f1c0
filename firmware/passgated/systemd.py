"""systemd's notify protocol and watchdog, both no-ops outside systemd.

``Type=notify``: READY=1 only after inputs are read, outputs are safe and the scanners had their
moment to connect; STOPPING=1 at shutdown.
``WatchdogSec=``: the control loop pings when it has made progress, so a loop stuck in a write or a
deadlock stops the pings and systemd restarts the gate (its outputs fall safe meanwhile). The pings
begin only after READY=1: the loop runs before the scanners start, and a ping must not tell systemd
of a gate that has not said it is ready.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("passgated")


def notify(message: str) -> None:
    """Send one datagram to $NOTIFY_SOCKET (nothing when not run by systemd)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("sd_notify %s failed: %s", message, exc)


def watchdog_interval() -> float:
    """Half of systemd's WatchdogSec, when this process is the one being watched (else 0)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return 0.0
    return int(usec) / 2e6


class Watchdog:
    """Pings systemd at most every ``interval_s`` when the caller reports progress."""

    def __init__(self, interval_s: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = watchdog_interval() if interval_s is None else interval_s
        self.monotonic = monotonic
        self._last = float("-inf")
        self._ready = threading.Event()

    def ready(self) -> None:
        """The gate has booted: say READY=1, then let the pings begin."""
        notify("READY=1")
        self._ready.set()

    def progressed(self) -> None:
        """The control loop finished one turn: ping if one is due (and the gate said it is ready)."""
        if not self.interval_s or not self._ready.is_set():
            return
        now = self.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            notify("WATCHDOG=1")
