"""The scanner contract: a source reports what happens to its device through methods, the base
keeps one typed health record, and listeners hear of the changes a gate acts on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator

from passgate.scanners import ReaderHealth, Scan, ScanKind, ScannerHealth, ScannerSource
from passgate.wire import Direction


class Device(ScannerSource):
    """A source driven by the test: each item is a scan, or a call on the reporting methods."""

    def __init__(self) -> None:
        super().__init__("device:1")
        self.script: list[object] = []
        self.go = threading.Event()

    def _read(self) -> Generator[Scan, None, None]:
        for step in self.script:
            if isinstance(step, Scan):
                yield step
            else:
                step()  # type: ignore[operator]


def test_health_is_a_typed_record_the_source_fills_through_methods() -> None:
    device = Device()
    device.script = [device._online, Scan(b"A", "device:1", time.monotonic()),
                     lambda: device._count("frames", 3), lambda: device._offline("unplugged")]
    heard: list[ScannerHealth] = []
    device.add_listener(lambda source: heard.append(source.health()))
    assert [scan.bytes for scan in device] == [b"A"]
    health = device.health()
    assert isinstance(health, ScannerHealth)
    assert (health.connected, health.last_error, health.scans, dict(health.counters)) == (
        False, "unplugged", 1, {"frames": 3})
    assert [h.connected for h in heard] == [True, False]  # connect and loss, not the counts
    assert json.loads(json.dumps(health.as_dict()))["frames"] == 3


def test_a_subclass_cannot_fake_being_connected() -> None:
    device = Device()
    device._connected = True  # the old implicit contract: now an unrelated attribute
    assert device.health().connected is False


def test_readers_of_one_source_and_their_tamper() -> None:
    device = Device()
    heard: list[bool] = []
    device.add_listener(lambda source: heard.append(source.health().connected))
    device._set_readers((ReaderHealth("bus#1", True, True), ReaderHealth("bus#2", True, True, tamper=True)))
    assert device.health().connected and [r.name for r in device.health().readers if r.tamper] == ["bus#2"]
    lost = ReaderHealth("bus#2", False, last_error="offline")
    device._set_readers((ReaderHealth("bus#1", True, True), lost))
    assert not device.health().connected
    assert heard == [True, False]
    assert device.health().as_dict()["readers"][1] == {"name": "bus#2", "connected": False, "secure": False,
                                                       "tamper": False, "last_error": "offline"}


def test_a_failing_listener_does_not_stop_the_source(caplog) -> None:
    device = Device()
    device.script = [device._online, Scan(b"B", "device:1", time.monotonic())]

    def broken(source: ScannerSource) -> None:
        raise RuntimeError("listener bug")

    device.add_listener(broken)
    assert [scan.bytes for scan in device] == [b"B"]
    assert "health listener failed" in caplog.text


def test_a_scan_says_where_it_came_from() -> None:
    plain = Scan(b"X", "serial:/dev/ttyACM0", 1.0)
    assert (plain.origin, plain.direction, plain.kind) == ("serial:/dev/ttyACM0", None, ScanKind.CODE)
    read = Scan(b"X", "osdp:/dev/ttyUSB0?addr=2:exit", 1.0, reader="osdp:/dev/ttyUSB0#2",
                direction=Direction.EXIT)
    assert read.origin == "osdp:/dev/ttyUSB0#2" and read.direction is Direction.EXIT
