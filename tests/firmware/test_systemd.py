"""The notify protocol's order: READY=1 first, the watchdog's pings only after it."""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from passgated.systemd import Watchdog


@pytest.fixture
def sock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A notify socket, as systemd gives a service (NOTIFY_SOCKET)."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        s.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield s


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(256).decode())
        except BlockingIOError:
            return messages


def test_no_ping_before_ready_then_one_per_interval(sock: socket.socket) -> None:
    now = [100.0]
    watchdog = Watchdog(interval_s=0.25, monotonic=lambda: now[0])
    watchdog.progressed()  # the control loop turns before the gate is ready
    assert received(sock) == []
    watchdog.ready()
    watchdog.progressed()
    now[0] += 0.125
    watchdog.progressed()  # not due yet
    now[0] += 0.125
    watchdog.progressed()
    assert received(sock) == ["READY=1", "WATCHDOG=1", "WATCHDOG=1"]


def test_not_watched_no_pings(sock: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process is the watched one
    watchdog = Watchdog()
    watchdog.ready()
    watchdog.progressed()
    assert received(sock) == ["READY=1"]
