"""OSDP readers (IEC 60839-11-5) on an RS-485 bus, through libosdp (``pip install 'passgate[osdp]'``).

>>> with OsdpScanner("/dev/ttyUSB0?addr=1:entry,2:exit", keys="/etc/passgated/osdp.keys") as bus:
...     for scan in bus:
...         print(scan.reader, scan.direction, scan.kind, scan.text)

The gate is the Control Panel; every reader (Peripheral Device) on the bus is polled by libosdp's
own thread. The secure channel is always on, enforced per reader (``EnforceSecure``): each reader's
key (SCBK) comes from a keys file only its owner can read, and a reader that cannot prove that key
stays offline. There is no fallback to the default install-mode key: a new reader gets its key only
through ``install_reader`` (``passgated osdp install``), an explicit one-time command.

What a reader sends becomes a ``Scan``:

- a card read of whole bytes of printable text (how QR readers send a short code): a code scan;
- a QR payload too long for one packet, in manufacturer replies (``osdp_MFGREP``) that each carry
  one part: ``b"QR"``, a message number, the part's index, the number of parts, then the bytes
  (``encode_parts`` builds them, for reader firmware and tests). The parts are joined in order; a
  missing, reordered or late part, or a payload over ``max_len``, becomes an ``INCOMPLETE`` scan
  the gate refuses with a reason, never a guess;
- any other card read (a Wiegand or raw card number): a ``CARD`` scan, which a gate refuses: a
  card number carries no signature.

A reader's tamper report and its link (online with the secure channel, or not) are in
``health().readers``; listeners hear of each change. The source is also a feedback device: the
gate's cues light the reader's LED and sound its beeper (``cue``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..decode import optional_import
from ..feedback import Cue, Signal
from ..wire import Direction
from .base import ReaderHealth, Scan, ScanKind, ScannerSource, log

DEFAULT_KEYS = "/etc/passgated/osdp.keys"
DEFAULT_BAUD = 115200
BAUDS = (9600, 19200, 38400, 57600, 115200, 230400)  # the rates OSDP names
PART_MAGIC = b"QR"
PART_HEADER = len(PART_MAGIC) + 3  # magic, message number, index, count
MFGREP_MAX = 128  # libosdp's largest manufacturer reply
PART_MAX = MFGREP_MAX - PART_HEADER
KEY_BYTES = 16
MAX_ADDRESS = 126  # 0x7F is the broadcast address
MAX_RETRY_S = 30.0  # the longest wait between attempts to bring an offline reader back
WRITE_TIMEOUT_S = 0.5  # a frame is tens of bytes: longer means the adapter is stuck (lost, reopened)
_LINE = re.compile(r"^\s*(\d+)\s+([0-9a-fA-F]{32})\s*$")


class OsdpError(ValueError):
    """A wrong bus spec or keys file: the message says what and how to fix it."""


# -- the spec -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OsdpBus:
    """``/dev/ttyUSB0?addr=1:entry,2:exit&baud=115200``: the port (a device or a pyserial URL),
    each reader's address with the way it faces (None: the scanner table's direction), the baud."""

    port: str
    readers: dict[int, Direction | None]
    baud: int = DEFAULT_BAUD


def parse_bus(target: str) -> OsdpBus:
    """The bus a target names; ``OsdpError`` says what is wrong with it."""
    port, _, query = target.partition("?")
    if not port:
        raise OsdpError("an OSDP bus needs a port, e.g. 'osdp:/dev/ttyUSB0?addr=1'")
    readers: dict[int, Direction | None] = {}
    baud = DEFAULT_BAUD
    seen: set[str] = set()
    for item in filter(None, query.split("&")):
        name, eq, value = item.partition("=")
        if not eq or name not in ("addr", "baud"):
            raise OsdpError(f"unknown bus parameter {item!r} (accepted: addr=1,2 and baud=115200)")
        if name in seen:
            raise OsdpError(f"{name} is given twice")
        seen.add(name)
        if name == "baud":
            if not value.isdigit() or int(value) not in BAUDS:
                raise OsdpError(f"baud must be one of {', '.join(map(str, BAUDS))}, got {value!r}")
            baud = int(value)
            continue
        for entry in value.split(","):
            address_text, colon, facing = entry.partition(":")
            if not address_text.isdigit() or not 0 <= int(address_text) <= MAX_ADDRESS:
                raise OsdpError(f"a reader address is 0-{MAX_ADDRESS}, got {address_text!r}")
            address = int(address_text)
            if address in readers:
                raise OsdpError(f"reader address {address} is given twice")
            direction: Direction | None = None
            if colon:
                try:
                    direction = Direction(facing)
                except ValueError:
                    raise OsdpError(f"reader {address}: the direction is entry or exit, "
                                    f"got {facing!r}") from None
            readers[address] = direction
    if not readers:
        raise OsdpError("name the readers' addresses, e.g. '?addr=1' or '?addr=1:entry,2:exit'")
    return OsdpBus(port, readers, baud)


# -- the keys file --------------------------------------------------------------------------------
def load_keys(path: str | Path) -> dict[int, bytes]:
    """Each reader's secure-channel key, from a file of ``ADDRESS HEXKEY`` lines (``#`` comments)
    that only its owner may read: a key others can read is a key others can use."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise OsdpError(f"no OSDP keys file {path}: give each reader its key with "
                        "'passgated osdp install'") from None
    except OSError as exc:
        raise OsdpError(f"cannot read the OSDP keys file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OsdpError(f"the OSDP keys file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise OsdpError(f"the OSDP keys file {path} can be read or written by others "
                            f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it")
        if info.st_uid not in (0, os.geteuid()):
            raise OsdpError(f"the OSDP keys file {path} belongs to another user (uid {info.st_uid})")
        raw = file.read(64 * 1024 + 1)
    if len(raw) > 64 * 1024:
        raise OsdpError(f"the OSDP keys file {path} is larger than 64 KiB")
    keys: dict[int, bytes] = {}
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        text = line.split("#", 1)[0]
        if not text.strip():
            continue
        match = _LINE.match(text)
        if match is None or int(match[1]) > MAX_ADDRESS:
            raise OsdpError(f"{path}:{number}: expected 'ADDRESS KEY' (an address 0-{MAX_ADDRESS} and "
                            "32 hex digits)")
        keys[int(match[1])] = bytes.fromhex(match[2])
    return keys


def _readers_keys(bus: OsdpBus, path: str) -> dict[int, bytes]:
    """Each reader's key from the file, or ``OsdpError`` naming the first reader without one."""
    keys = load_keys(path)
    missing = [address for address in bus.readers if address not in keys]
    if missing:
        raise OsdpError(f"no key for reader {missing[0]} in {path}: run passgated osdp install "
                        f"\"osdp:{bus.port}?addr={missing[0]}\" --keys {path} once")
    return {address: keys[address] for address in bus.readers}


def store_key(path: str | Path, address: int, key: bytes) -> None:
    """Write (or replace) one reader's key: a new file of mode 600 replaces the old one at once,
    so a crash leaves either the old keys or the new ones."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"an SCBK is {KEY_BYTES} bytes")
    path = Path(path)
    keys = load_keys(path) if path.exists() else {}
    keys[address] = key
    lines = ["# OSDP secure-channel keys (SCBK), one reader a line: written by 'passgated osdp install'"]
    lines += [f"{addr} {value.hex()}" for addr, value in sorted(keys.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".osdp-keys-", dir=path.parent)  # mode 600
    try:
        with os.fdopen(fd, "w") as file:
            file.write("\n".join(lines) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- payloads in parts ----------------------------------------------------------------------------
def encode_parts(payload: bytes, message: int = 0, size: int = PART_MAX) -> list[bytes]:
    """The manufacturer-reply bodies that carry ``payload`` (the reader's side of the convention)."""
    if not 1 <= size <= PART_MAX:
        raise ValueError(f"a part carries 1-{PART_MAX} bytes")
    chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    if len(chunks) > 255:
        raise ValueError("a payload of more than 255 parts")
    return [PART_MAGIC + bytes((message & 0xFF, i, len(chunks))) + chunk for i, chunk in enumerate(chunks)]


@dataclass(slots=True)
class _Message:
    number: int
    count: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    last: float = 0.0


# -- the port -------------------------------------------------------------------------------------
class _Port:
    """libosdp's channel over pyserial: reads and writes never block, and a lost port (an unplugged
    adapter) is closed, reported and reopened every ``retry`` seconds instead of raising into
    libosdp's thread."""

    def __init__(self, serial_module: Any, url: str, baud: int, retry: float) -> None:
        self._serial = serial_module
        self.url, self.baud, self.retry = url, baud, retry
        self.id = 0  # libosdp's channel id: one bus, one channel
        self.error: str | None = None
        self._port: Any = None
        self._next_open = 0.0
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> Any:
        if self._port is not None or self._closed or time.monotonic() < self._next_open:
            return self._port
        try:
            # reads never wait (libosdp polls); a write of one frame waits at most WRITE_TIMEOUT_S
            port = self._serial.serial_for_url(self.url, baudrate=self.baud, timeout=0,
                                               write_timeout=WRITE_TIMEOUT_S, do_not_open=True)
            port.open()
        except (OSError, ValueError) as exc:
            self._lost(exc)
            return None
        self._port, self.error = port, None
        return port

    def _lost(self, exc: BaseException) -> None:
        if self.error is None:
            what = "port lost" if self._port is not None else "cannot open the port"
            log.warning("osdp:%s: %s (%s); retrying every %gs", self.url, what, exc, self.retry)
        self.error = f"port: {exc}"
        self._next_open = time.monotonic() + self.retry
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(OSError):
                port.close()

    def reopen(self) -> None:
        """Try to open a lost port again (libosdp reads nothing from a bus whose readers are all
        offline, so the reopening cannot wait for its next read)."""
        with self._lock:
            self._open()

    def read(self, max_bytes: int) -> bytes:
        with self._lock:
            port = self._open()
            if port is None:
                return b""
            try:
                return bytes(port.read(max_bytes))
            except (OSError, TypeError) as exc:  # pyserial raises TypeError on a vanished fd
                self._lost(exc)
                return b""

    def write(self, data: bytes) -> int:
        with self._lock:
            port = self._open()
            if port is None:
                return 0
            try:
                return int(port.write(data) or 0)
            except (OSError, TypeError) as exc:
                self._lost(exc)
                return 0

    def flush(self) -> None:
        with self._lock:
            if self._port is not None:
                try:
                    self._port.reset_input_buffer()
                except (OSError, TypeError) as exc:
                    self._lost(exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._port is not None:
                self._port.close()
                self._port = None


@dataclass(slots=True)
class _Reader:
    address: int
    name: str
    direction: Direction | None
    online: bool = False
    secure: bool = False
    tamper: bool = False
    failures: int = 0  # attempts to bring it back since it was last online
    retry_at: float = 0.0
    disabled: bool = False  # disabled for a retry: enable it on the next turn
    shown: Signal | None = None  # the state its LED holds (a decision's LED returns to it by itself)


# LED and beeper patterns: times in OSDP's units of 100 ms.
_TEMPORARY = {  # a decision: (colour, on, off, seconds shown, beeps (on, off, repetitions) or None)
    Signal.GRANTED: ("Green", 10, 0, 2.0, (1, 0, 1)),
    Signal.REFUSED: ("Red", 3, 2, 2.0, (2, 1, 3)),
    Signal.ALARM: ("Red", 2, 2, 3.0, None),
}
_PERMANENT = {  # a state: (colour, on, off); off 0 is steady
    Signal.READY: ("Blue", 10, 0),
    Signal.FAULT: ("Red", 10, 0),
    Signal.EMERGENCY: ("Green", 5, 5),
    Signal.OPEN: ("Green", 10, 0),
    Signal.CLOSED: ("Red", 10, 0),
}


class OsdpScanner(ScannerSource):
    """The readers of one OSDP bus (``/dev/ttyUSB0?addr=1:entry,2:exit&baud=115200``), as one
    source. ``keys``: the keys file; ``max_len``: the largest payload joined from parts;
    ``part_timeout``: seconds a payload's next part may take; ``retry``: seconds between attempts to
    bring an offline reader back (doubling while it stays away, up to 30 s)."""

    def __init__(
        self,
        target: str,
        *,
        keys: str = DEFAULT_KEYS,
        max_len: int = 2048,
        part_timeout: float = 1.0,
        retry: float = 2.0,
        dedupe: float = 0.0,
        max_rate: float = 20.0,
    ) -> None:
        super().__init__(f"osdp:{target}", dedupe=dedupe, max_rate=max_rate)
        self._osdp = optional_import("osdp", "osdp", "libosdp")
        self._serial = optional_import("serial", "osdp", "pyserial")
        self.bus = parse_bus(target)
        self._keys = _readers_keys(self.bus, keys)
        self.max_len, self.part_timeout, self.retry = max_len, part_timeout, retry
        self.readers = {address: _Reader(address, f"{self.source.partition('?')[0]}#{address}", facing)
                        for address, facing in self.bus.readers.items()}
        self._by_name = {reader.name: reader for reader in self.readers.values()}
        self._messages: dict[int, _Message] = {}
        self._broken: dict[int, int] = {}  # address -> message number whose rest is ignored
        self._wakeup = threading.Event()
        self._cp: Any = None
        self._cp_lock = threading.Lock()  # the control panel's life vs cue() from the gate's loop
        self._state: Signal | None = None  # the gate's state, shown again by a reader that comes back
        self._port: _Port | None = None

    @classmethod
    def check_target(cls, target: str) -> None:
        """Check the bus spec without opening anything (``passgated check-config``)."""
        parse_bus(target)

    @classmethod
    def check_files(cls, target: str, options: Mapping[str, Any]) -> None:
        """The keys file: there, private, with a key for every reader on the bus."""
        _readers_keys(parse_bus(target), str(options.get("keys", DEFAULT_KEYS)))

    @classmethod
    def target_directions(cls, target: str) -> frozenset[Direction]:
        """The directions the spec gives its readers."""
        return frozenset(d for d in parse_bus(target).readers.values() if d is not None)

    # -- reading ----------------------------------------------------------------------------------
    def _read(self) -> Generator[Scan, None, None]:
        osdp = self._osdp
        port = self._port = _Port(self._serial, self.bus.port, self.bus.baud, self.retry)
        infos = [osdp.PDInfo(address, port, scbk=self._keys[address], flags=[osdp.LibFlag.EnforceSecure],
                             name=reader.name) for address, reader in self.readers.items()]
        cp = osdp.ControlPanel(infos, log_level=osdp.LogLevel.Error, event_handler=self._woken)
        started = time.monotonic()
        for reader in self.readers.values():
            reader.retry_at = started + self.retry
        cp.start()
        with self._cp_lock:
            self._cp = cp
        self._report()
        try:
            while not self._closed.is_set():
                self._wakeup.wait(0.05)
                self._wakeup.clear()
                now = time.monotonic()
                for reader in self.readers.values():
                    while (event := cp.get_event(reader.address, timeout=-1)) is not None:
                        yield from self._event(reader, event, now)
                yield from self._expire(now)
                self._link(cp, port, now)
        finally:
            with self._cp_lock:
                self._cp = None
            cp.stop()
            port.close()
            for reader in self.readers.values():
                reader.online = reader.secure = False
            self._report()

    def _woken(self, pd: int, event: dict[str, Any]) -> int:
        self._wakeup.set()  # libosdp's thread: the event itself waits in its queue
        return 0

    def _event(self, reader: _Reader, event: Any, now: float) -> Iterator[Scan]:
        osdp = self._osdp
        if not isinstance(event, dict):
            self._drop(f"{reader.name}: an event libosdp could not describe")
            return
        kind = event.get("event")
        if kind == osdp.Event.CardRead:
            yield self._card(reader, event, now)
        elif kind == osdp.Event.ManufacturerReply:
            yield from self._part(reader, event.get("data"), now)
        elif kind == osdp.Event.Status:
            report = event.get("report")
            if event.get("type") == osdp.StatusReportType.Local and isinstance(report, bytes) and report:
                tamper = report[0] != 0
                if tamper != reader.tamper:
                    reader.tamper = tamper
                    log.warning("%s: tamper %s", reader.name, "reported" if tamper else "cleared")
                    self._report()
        elif kind == osdp.Event.KeyPress:
            self._drop(f"{reader.name}: keypad input is not a credential")
        else:
            self._drop(f"{reader.name}: an event this gate does not use ({kind!r})")

    def _scan(self, reader: _Reader, data: bytes, t: float, kind: ScanKind = ScanKind.CODE,
              detail: str = "") -> Scan:
        return Scan(data, self.source, t, reader=reader.name, direction=reader.direction, kind=kind,
                    detail=detail)

    def _card(self, reader: _Reader, event: dict[str, Any], now: float) -> Scan:
        data = event.get("data")
        data = data if isinstance(data, bytes) else b""
        bits = event.get("length")
        raw = event.get("format") == self._osdp.CardFormat.Unspecified
        whole = isinstance(bits, int) and bits == 8 * len(data) and bits > 0
        if raw and whole and all(0x20 <= byte <= 0x7E for byte in data):
            return self._scan(reader, data, now)  # a QR code's text, sent as a card read
        return self._scan(reader, data, now, ScanKind.CARD, f"a card number ({bits} bits)")

    def _part(self, reader: _Reader, data: Any, now: float) -> Iterator[Scan]:
        address = reader.address
        if not isinstance(data, bytes) or len(data) < PART_HEADER or not data.startswith(PART_MAGIC):
            self._drop(f"{reader.name}: a manufacturer reply that is not a QR part")
            return
        number, index, count = data[len(PART_MAGIC):PART_HEADER]
        chunk = data[PART_HEADER:]
        if count == 0 or index >= count:
            self._drop(f"{reader.name}: a QR part numbered {index} of {count}")
            return
        message = self._messages.get(address)
        if message is not None and (number != message.number or index != len(message.parts)):
            yield self._incomplete(reader, message, "a part is missing or out of order", now)
            message = None
        if message is None:
            if index != 0:
                if self._broken.get(address) != number:
                    self._broken[address] = number
                    yield self._scan(reader, b"", now, ScanKind.INCOMPLETE,
                                     f"parts before {index + 1} of {count} are missing")
                else:  # the payload was refused once already: its other parts are counted, not decided
                    self._drop(f"{reader.name}: part {index + 1} of {count} of a refused QR payload")
                return
            message = self._messages[address] = _Message(number, count)
            self._broken.pop(address, None)
        if count != message.count:
            yield self._incomplete(reader, message, "the parts disagree on their number", now)
            return
        message.parts.append(chunk)
        message.size += len(chunk)
        message.last = now
        if message.size > self.max_len:
            yield self._incomplete(reader, message, f"longer than max_len ({self.max_len} bytes)", now)
            return
        if len(message.parts) == count:
            del self._messages[address]
            yield self._scan(reader, b"".join(message.parts), now)

    def _incomplete(self, reader: _Reader, message: _Message, why: str, now: float) -> Scan:
        self._messages.pop(reader.address, None)
        self._broken[reader.address] = message.number
        detail = f"{why}: {len(message.parts)} of {message.count} parts arrived"
        return self._scan(reader, b"", now, ScanKind.INCOMPLETE, detail)

    def _expire(self, now: float) -> Iterator[Scan]:
        for address, message in list(self._messages.items()):
            if now - message.last > self.part_timeout:
                why = f"the next part did not come within {self.part_timeout:g} s"
                yield self._incomplete(self.readers[address], message, why, now)

    # -- the readers' links -----------------------------------------------------------------------
    def _link(self, cp: Any, port: _Port, now: float) -> None:
        online, secure = cp.status(), cp.sc_status()
        changed = False
        for index, reader in enumerate(self.readers.values()):
            is_online, is_secure = bool(online >> index & 1), bool(secure >> index & 1)
            if port.error is not None:
                is_online = is_secure = False
            if (is_online, is_secure) != (reader.online, reader.secure):
                changed = True
                if is_online and not reader.online:
                    log.info("%s: online%s", reader.name, " with the secure channel" if is_secure else "")
                    reader.failures = 0
                    with self._cp_lock:
                        reader.shown = None  # a reader back from a power cut shows its own default
                        self._show_state(cp, reader)
                elif reader.online and not is_online:
                    log.warning("%s: offline", reader.name)
                    reader.retry_at = now + self.retry
                reader.online, reader.secure = is_online, is_secure
            if not reader.online and port.error is None:
                self._retry(cp, reader, now)
        if port.error is not None:
            port.reopen()
        if changed:
            self._report()

    def _retry(self, cp: Any, reader: _Reader, now: float) -> None:
        """libosdp waits 5 minutes before it tries an offline reader again: a gate tries sooner."""
        if reader.disabled:  # once libosdp has disabled it, enabling it starts it afresh
            if not cp.is_pd_enabled(reader.address) and cp.enable_pd(reader.address):
                reader.disabled = False
        elif now >= reader.retry_at:
            reader.disabled = bool(cp.disable_pd(reader.address))
            reader.failures += 1
            reader.retry_at = now + min(MAX_RETRY_S, self.retry * 2 ** min(reader.failures, 5))

    def _report(self) -> None:
        port_error = self._port.error if self._port is not None else None
        readers = tuple(
            ReaderHealth(reader.name, reader.online and reader.secure, reader.secure, reader.tamper,
                         None if reader.online else (port_error or "offline"))
            for reader in self.readers.values())
        self._set_readers(readers)

    # -- feedback ---------------------------------------------------------------------------------
    def cue(self, cue: Cue) -> None:
        """Show a cue on the readers: a decision on the reader it came from (every reader when it
        came from elsewhere or nowhere), a state on every reader."""
        with self._cp_lock:
            cp = self._cp
            if cp is None:
                if cue.signal in _PERMANENT:
                    self._state = cue.signal
                return
            if cue.signal in _PERMANENT:
                self._state = cue.signal
                for reader in self.readers.values():
                    if reader.online:
                        self._show_state(cp, reader)
                return
            target = self._by_name.get(cue.reader)
            for reader in [target] if target is not None else self.readers.values():
                if reader.online:
                    self._show_decision(cp, reader, cue.signal)

    def _show_state(self, cp: Any, reader: _Reader) -> None:
        """The gate's state as the reader's steady LED, sent only when it changes: a decision's LED
        is temporary and returns to it by itself, and every command costs the bus a poll."""
        if self._state is None or reader.shown is self._state:
            return
        colour, on, off = _PERMANENT[self._state]
        if self._led(cp, reader, colour, on, off, temporary=False):
            reader.shown = self._state

    def _show_decision(self, cp: Any, reader: _Reader, signal: Signal) -> None:
        pattern = _TEMPORARY.get(signal)
        if pattern is None:
            return
        colour, on, off, seconds, beeps = pattern
        self._led(cp, reader, colour, on, off, temporary=True, timer=round(seconds * 10))
        if beeps is not None:
            beep_on, beep_off, repeat = beeps
            self._command(cp, reader, {"command": self._osdp.Command.Buzzer, "reader": 0, "control_code": 2,
                                       "on_count": beep_on, "off_count": beep_off, "rep_count": repeat})

    def _led(self, cp: Any, reader: _Reader, colour: str, on: int, off: int, *, temporary: bool,
             timer: int = 0) -> bool:
        colours = self._osdp.CommandLEDColor
        return self._command(cp, reader, {
            "command": self._osdp.Command.LED, "reader": 0, "led_number": 0,
            "control_code": 2 if temporary else 1, "temporary": temporary,
            "on_count": on, "off_count": off, "on_color": getattr(colours, colour),
            "off_color": colours.Black, "timer_count": timer})

    def _command(self, cp: Any, reader: _Reader, command: dict[str, Any]) -> bool:
        if cp.submit_command(reader.address, command):
            return True
        log.debug("%s: command %s not queued", reader.name, command["command"])
        return False

    def _wake(self) -> None:
        self._wakeup.set()


# -- install mode ---------------------------------------------------------------------------------
def install_reader(target: str, keys: str | Path, *, timeout: float = 10.0,
                   key: bytes | None = None) -> int:
    """Give the one reader ``target`` names a fresh secure-channel key, once: the reader must be in
    install mode (it accepts the default key, SCBK-D). The new key is set over the channel that key
    opens, then proven by a secure channel that enforces it, and only then written to ``keys``.
    Returns the reader's address; ``OsdpError`` says what went wrong (nothing is written then)."""
    import secrets

    osdp = optional_import("osdp", "osdp", "libosdp")
    serial_module = optional_import("serial", "osdp", "pyserial")
    bus = parse_bus(target)
    if len(bus.readers) != 1:
        raise OsdpError("install one reader at a time: name one address, e.g. '?addr=1'")
    address = next(iter(bus.readers))
    path = Path(keys)
    if path.exists():
        if address in load_keys(path):
            raise OsdpError(f"reader {address} already has a key in {path}: remove its line to install "
                            "it again (and put the reader in install mode)")
    elif not path.parent.is_dir():
        raise OsdpError(f"no directory {path.parent} for the keys file")
    probe = _Port(serial_module, bus.port, bus.baud, retry=0.5)
    probe.reopen()
    probe.close()
    if probe.error is not None:
        raise OsdpError(f"cannot open {bus.port}: {probe.error.removeprefix('port: ')}")
    fresh = key if key is not None else secrets.token_bytes(KEY_BYTES)
    # 1. The library sets the key itself once the default key opened the channel (no EnforceSecure).
    if not _secure_within(osdp, serial_module, bus, address, fresh, [], timeout):
        raise OsdpError(f"reader {address} did not open a secure channel with the install-mode key within "
                        f"{timeout:g} s: is it in install mode, at this address and baud?")
    # 2. Proof: the reader now answers the new key, with no fallback.
    if not _secure_within(osdp, serial_module, bus, address, fresh, [osdp.LibFlag.EnforceSecure], timeout):
        raise OsdpError(f"reader {address} did not take the new key: nothing was written")
    store_key(path, address, fresh)
    return address


def _secure_within(osdp: Any, serial_module: Any, bus: OsdpBus, address: int, key: bytes,
                   flags: list[Any], timeout: float) -> bool:
    port = _Port(serial_module, bus.port, bus.baud, retry=0.5)
    cp = osdp.ControlPanel([osdp.PDInfo(address, port, scbk=key, flags=flags)], log_level=osdp.LogLevel.Error)
    cp.start()
    try:
        deadline = time.monotonic() + timeout
        settled: float | None = None
        while time.monotonic() < deadline:
            if cp.is_online(address) and cp.is_sc_active(address):
                # With the default key the library sends the new one right after: let it finish.
                settled = settled if settled is not None else time.monotonic()
                if not flags and time.monotonic() - settled < 1.0:
                    time.sleep(0.05)
                    continue
                return True
            time.sleep(0.05)
        return False
    finally:
        cp.stop()
        port.close()


__all__ = ["DEFAULT_KEYS", "OsdpBus", "OsdpError", "OsdpScanner", "encode_parts", "install_reader",
           "load_keys", "parse_bus", "store_key"]
