"""The far end of an OSDP bus for tests: libosdp's own ``PeripheralDevice`` readers behind a real pty.

The gate's ``OsdpScanner`` opens the pty's slave like any serial adapter; this side holds the
master and plays the RS-485 wire: what the Control Panel sends reaches every reader, what a reader
sends reaches the Control Panel and the other readers, never itself (a half-duplex bus with echo
suppression, as a real adapter with automatic direction control gives). ``inject(bytes)`` puts
anything on the wire, for hostile-frame tests.
"""

from __future__ import annotations

import os
import pty
import select
import threading
import tty
from collections.abc import Iterable
from typing import Any

import osdp

CAPABILITIES = [
    (osdp.Capability.LEDControl, 1, 1),
    (osdp.Capability.AudibleControl, 1, 1),
    (osdp.Capability.CommunicationSecurity, 1, 1),
]


class _Drop(osdp.Channel):
    """One reader's tap on the wire."""

    def __init__(self, bus: Bus) -> None:
        super().__init__()
        self.bus = bus
        self.inbox = bytearray()
        self.connected = True

    def read(self, max_bytes: int) -> bytes:
        with self.bus.lock:
            data = bytes(self.inbox[:max_bytes])
            del self.inbox[:max_bytes]
        return data

    def write(self, data: bytes) -> int:
        if not self.connected:
            return len(data)  # unplugged: the bytes go nowhere
        self.bus.send(data, origin=self)
        return len(data)

    def flush(self) -> None:
        with self.bus.lock:
            self.inbox.clear()


class Reader:
    """A libosdp reader on the bus: ``commands`` holds what the gate sent it (LED, buzzer...)."""

    def __init__(self, bus: Bus, address: int, key: bytes | None) -> None:
        self.address = address
        self.drop = _Drop(bus)
        self.commands: list[dict[str, Any]] = []
        self.keys: list[bytes] = []  # keys the gate set (install mode)
        info = osdp.PDInfo(address, self.drop, scbk=key)
        self.device = osdp.PeripheralDevice(info, osdp.PDCapabilities(CAPABILITIES),
                                            log_level=osdp.LogLevel.Emergency,
                                            command_handler=self._command)
        self.running = False

    def _command(self, command: dict[str, Any]) -> tuple[int, Any]:
        self.commands.append(command)
        if command.get("command") == osdp.Command.Keyset:
            self.keys.append(command["data"])
        self.device.command_queue.get_nowait()  # the wrapper queues every command as well
        return 0, None

    def start(self) -> None:
        self.device.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.device.stop()
            self.running = False

    def unplug(self) -> None:
        self.drop.connected = False
        with self.drop.bus.lock:
            self.drop.bus.drops.remove(self.drop)

    def plug(self) -> None:
        self.drop.connected = True
        with self.drop.bus.lock:
            self.drop.inbox.clear()
            self.drop.bus.drops.append(self.drop)

    def submit(self, event: dict[str, Any]) -> bool:
        return bool(self.device.submit_event(event))

    def show_code(self, text: str) -> bool:
        """A short QR code read, sent as a card read of its bytes (how QR readers send one)."""
        data = text.encode()
        return self.submit({"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
                            "format": osdp.CardFormat.Unspecified, "length": 8 * len(data), "data": data})

    def show_parts(self, parts: Iterable[bytes], vendor: int = 0x00A0B0) -> None:
        for part in parts:
            assert self.submit({"event": osdp.Event.ManufacturerReply, "vendor_code": vendor, "data": part})

    def show_card(self, data: bytes = b"\x12\x34\x56\x40", bits: int = 26) -> bool:
        return self.submit({"event": osdp.Event.CardRead, "reader_no": 0, "format": osdp.CardFormat.Wiegand,
                            "direction": 0, "length": bits, "data": data})

    def tamper(self, active: bool) -> bool:
        return self.submit({"event": osdp.Event.Status, "type": osdp.StatusReportType.Local,
                            "report": bytes([1 if active else 0, 0])})


class Bus:
    """A pty whose slave is the gate's serial port (``port``), with readers on the master side."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        tty.setraw(self.master)
        self.port = os.ttyname(slave)
        self._slave = slave  # held open so the pty survives the gate reopening it
        self.lock = threading.Lock()
        self.drops: list[_Drop] = []
        self.readers: list[Reader] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="osdp-bus", daemon=True)
        self._thread.start()

    def add(self, address: int, key: bytes | None) -> Reader:
        reader = Reader(self, address, key)
        with self.lock:
            self.drops.append(reader.drop)
        self.readers.append(reader)
        return reader

    def send(self, data: bytes, origin: _Drop | None = None) -> None:
        with self.lock:
            for drop in self.drops:
                if drop is not origin:
                    drop.inbox += data
        os.write(self.master, data)

    def inject(self, data: bytes) -> None:
        """Bytes on the wire from nobody the gate knows (noise, a hostile device)."""
        self.send(data)

    def _pump(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            with self.lock:
                for drop in self.drops:
                    drop.inbox += data

    def close(self) -> None:
        for reader in self.readers:
            reader.stop()
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self._slave)

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
