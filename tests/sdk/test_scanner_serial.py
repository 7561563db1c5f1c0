"""SerialScanner against a real pty pair: the test writes like a scanner on the master end."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from passgate.scanners import Scan, SerialScanner, open_scanner
from tests.helpers import Pty, wait_for

WAIT = 3.0  # generous liveness bound for every expected event


class Reader:
    """Iterates a source in its own thread (as the gate daemon does) into a queue."""

    def __init__(self, source: SerialScanner) -> None:
        self.source = source
        self.scans: queue.Queue[Scan] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for scan in self.source:
            self.scans.put(scan)

    def take(self, n: int = 1) -> list[Scan]:
        return [self.scans.get(timeout=WAIT) for _ in range(n)]

    def nothing_more(self) -> bool:
        return self.scans.empty()


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    device = Pty(tmp_path / "ttyScanner")
    yield device
    for fd in (device.master, device.slave):
        with contextlib.suppress(OSError):  # already closed by an unplug
            os.close(fd)


def start(pty: Pty, **options: object) -> Reader:
    options.setdefault("dedupe", 0)
    options.setdefault("min_len", 1)  # short payloads here; the noise filter has its own test
    source = SerialScanner(str(pty.link), **options)  # type: ignore[arg-type]
    reader = Reader(source)
    assert wait_for(lambda: source.health().connected)
    return reader


def stop(reader: Reader) -> None:
    reader.source.close()
    reader.thread.join(WAIT)
    assert not reader.thread.is_alive()


@pytest.mark.parametrize(
    ("framing", "end"), [("cr", b"\r"), ("lf", b"\n"), ("crlf", b"\r\n"), ("any", b"\r\n")]
)
def test_terminator_framings(pty: Pty, framing: str, end: bytes) -> None:
    reader = start(pty, framing=framing)
    pty.write(b"PG1:AAA" + end + b"PG1:B")  # the second scan is split over two writes
    pty.write(b"BB" + end)
    assert [s.text for s in reader.take(2)] == ["PG1:AAA", "PG1:BBB"]
    assert reader.source.health().dropped == 0
    stop(reader)


def test_scan_fields_and_timestamp(pty: Pty) -> None:
    reader = start(pty, framing="cr")
    before = time.monotonic()
    pty.write(b"PG1:HELLO\r")
    (scan,) = reader.take()
    assert (scan.bytes, scan.text, scan.source) == (b"PG1:HELLO", "PG1:HELLO", f"serial:{pty.link}")
    assert before <= scan.t <= time.monotonic()
    stop(reader)


def test_aim_identifiers_are_stripped(pty: Pty) -> None:
    reader = start(pty)
    pty.write(b"]Q1PG1:QR\r]C0CODE128\r]d2DM\rNOAIM\r")
    assert [s.text for s in reader.take(4)] == ["PG1:QR", "CODE128", "DM", "NOAIM"]
    stop(reader)


def test_gap_framing_for_scanners_without_terminator(pty: Pty) -> None:
    reader = start(pty, framing="gap", gap_ms=40)
    pty.write(b"PG1:")
    pty.write(b"FIRST")  # same burst: one frame
    (first,) = reader.take()
    pty.write(b"PG1:SECOND")
    (second,) = reader.take()
    assert (first.text, second.text) == ("PG1:FIRST", "PG1:SECOND")
    stop(reader)


def test_malformed_input_is_counted_and_skipped(pty: Pty) -> None:
    reader = start(pty, max_len=64)
    pty.write(b"\x00\x01\xfe\xff\x02noise\r")  # binary noise
    pty.write(b"\xc3\x28bad-utf8\r")  # invalid UTF-8 (no control characters)
    pty.write(b"X" * 500 + b"\r")  # over-long, in several reads
    pty.write(b"PG1:GOOD\r")
    assert [s.text for s in reader.take()] == ["PG1:GOOD"]
    health = reader.source.health()
    assert health.dropped == 3
    assert health.scans == 1
    assert "longer than 64" in health.last_error
    stop(reader)


def test_duplicates_within_the_window_are_suppressed(pty: Pty) -> None:
    reader = start(pty, dedupe=30)
    pty.write(b"PG1:SAME\rPG1:SAME\rPG1:OTHER\rPG1:SAME\r")
    assert [s.text for s in reader.take(2)] == ["PG1:SAME", "PG1:OTHER"]
    assert wait_for(lambda: reader.source.health().duplicates == 2)
    assert reader.nothing_more()
    stop(reader)


def test_flood_is_bounded(pty: Pty) -> None:
    reader = start(pty)
    pty.write(b"".join(b"PG1:%d\r" % i for i in range(200)))
    assert wait_for(lambda: reader.source.health().scans + reader.source.health().dropped == 200)
    health = reader.source.health()
    assert health.dropped > 0
    assert "flood" in health.last_error
    assert reader.scans.qsize() == health.scans < 200
    stop(reader)


def test_unplug_replug_reconnects_and_loses_nothing_after(pty: Pty) -> None:
    reader = start(pty)
    pty.write(b"PG1:BEFORE\r")
    assert [s.text for s in reader.take()] == ["PG1:BEFORE"]
    pty.unplug()
    assert wait_for(lambda: not reader.source.health().connected)
    assert reader.source.health().last_error
    pty.plug()
    replugged = time.monotonic()
    assert wait_for(lambda: reader.source.health().connected, 2.5)
    assert time.monotonic() - replugged <= 2.0  # the spec: reconnects by itself within 2 s
    pty.write(b"".join(b"PG1:AFTER%d\r" % i for i in range(10)))
    assert [s.text for s in reader.take(10)] == [f"PG1:AFTER{i}" for i in range(10)]
    assert reader.source.health().counters["reconnects"] == 1
    stop(reader)


def test_missing_port_waits_and_reports_not_connected(tmp_path: Path) -> None:
    link = tmp_path / "ttyLater"
    reader = Reader(SerialScanner(str(link), min_len=1))
    assert wait_for(lambda: reader.source.health().last_error is not None)
    assert reader.source.health().connected is False
    device = Pty(link)  # plugged in late
    assert wait_for(lambda: reader.source.health().connected)
    device.write(b"PG1:LATE\r")
    assert [s.text for s in reader.take()] == ["PG1:LATE"]
    stop(reader)
    device.unplug()


def test_close_from_another_thread_ends_a_blocked_iteration(pty: Pty) -> None:
    reader = start(pty)
    stop(reader)  # asserts the reader thread ended
    assert reader.source.health().connected is False


def test_pyserial_socket_url_for_a_remote_scanner() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        host, port = server.getsockname()
        source = open_scanner(f"serial:socket://{host}:{port}", framing="cr", dedupe=0, min_len=1)
        reader = Reader(source)  # type: ignore[arg-type]
        server.settimeout(WAIT)
        conn, _ = server.accept()
        with conn:
            # pyserial's socket:// open() discards what arrives while it opens: wait for it
            assert wait_for(lambda: source.health().connected)
            conn.sendall(b"]Q1PG1:REMOTE\r")
            assert [(s.text, s.source) for s in reader.take()] == [
                ("PG1:REMOTE", f"serial:socket://{host}:{port}")
            ]
        stop(reader)


def test_short_fragments_are_line_noise(pty: Pty) -> None:
    """Binary noise throws off short printable fragments between stray CR/LF bytes: by default a
    line under 8 bytes is dropped and counted, so it cannot eat the flood budget of good scans."""
    reader = start(pty, min_len=8)
    pty.write(b"a7\rQ\n%x!\rGOOD-CODE-1\r")
    (scan,) = reader.take()
    assert scan.bytes == b"GOOD-CODE-1"
    assert reader.source.health().dropped == 3
    stop(reader)
