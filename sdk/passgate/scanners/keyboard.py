"""Keyboard-wedge scanners read straight from evdev (Linux; ``pip install 'passgate[keyboard]'``).

>>> for scan in KeyboardScanner("/dev/input/by-id/usb-Scanner-event-kbd"):
...     print(scan.text)

The device is grabbed (``EVIOCGRAB``) so its keystrokes never reach a console or a login prompt.
``KeyMap`` (pure, no evdev) turns key events into bytes with the US layout; a ``Framer`` ends a
line on Enter or after a gap, for scanners configured without a suffix.
"""

from __future__ import annotations

import select
import time
from collections.abc import Generator, Iterable
from typing import Protocol

from ..decode import optional_import
from .base import Scan, ScannerSource, Waker, log
from .framing import Framer

EV_KEY = 1
KEY_ENTER, KEY_KPENTER = 28, 96
KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_CAPSLOCK = 42, 54, 58
# Linux key codes (input-event-codes.h) -> (plain, shifted) characters of the US layout.
_ROWS = (
    (2, "1234567890-=", "!@#$%^&*()_+"),
    (15, "\tqwertyuiop[]", "\tQWERTYUIOP{}"),
    (30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
    (57, " ", " "),
    (71, "789-456+1230.", "789-456+1230."),
    (55, "*", "*"),
    (98, "/", "/"),
)
US_KEYS = {
    first + i: (plain, shifted)
    for first, plains, shifteds in _ROWS
    for i, (plain, shifted) in enumerate(zip(plains, shifteds, strict=True))
}
_IGNORED = frozenset({29, 56, 97, 100, 125, 126})  # Ctrl, Alt, Meta: no character


class _InputEvent(Protocol):
    """The fields of an ``evdev.InputEvent`` read here."""

    type: int
    code: int
    value: int


class _InputDevice(Protocol):
    """The part of ``evdev.InputDevice`` used here (evdev ships no type hints)."""

    def fileno(self) -> int: ...
    def read(self) -> Iterable[_InputEvent]: ...
    def grab(self) -> None: ...
    def close(self) -> None: ...


class KeyMap:
    """Key events -> bytes. Enter gives CR (the line end); a key with no US character gives NUL,
    which makes the framer reject that line rather than pass on a wrong code."""

    def __init__(self) -> None:
        self._shift: set[int] = set()
        self._caps = False

    def feed(self, events: Iterable[tuple[int, int, int]]) -> bytes:
        """``events`` as (type, code, value) triples; value 1 is a press, 0 a release."""
        out = bytearray()
        for kind, code, value in events:
            if kind != EV_KEY:
                continue
            if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
                (self._shift.add if value else self._shift.discard)(code)
            elif value != 1 or code in _IGNORED:
                continue  # releases, autorepeat, modifiers
            elif code == KEY_CAPSLOCK:
                self._caps = not self._caps
            elif code in (KEY_ENTER, KEY_KPENTER):
                out += b"\r"
            elif code in US_KEYS:
                plain, shifted = US_KEYS[code]
                upper = bool(self._shift) != (self._caps and plain.isalpha())
                out += (shifted if upper else plain).encode()
            else:
                out += b"\x00"
        return bytes(out)


class KeyboardScanner(ScannerSource):
    """Scans from an evdev keyboard device, grabbed exclusively (``grab=False`` to share it).
    A line ends on Enter or after ``gap_ms`` of silence. An unplugged device is reopened every
    ``retry`` seconds."""

    def __init__(
        self,
        path: str,
        *,
        gap_ms: float = 100.0,
        max_len: int = 4096,
        min_len: int = 8,
        grab: bool = True,
        dedupe: float = 1.0,
        retry: float = 0.5,
    ) -> None:
        super().__init__(f"keyboard:{path}", dedupe=dedupe)
        self._evdev = optional_import("evdev", "keyboard", "evdev")
        self.path = path
        self.grab = grab
        self.retry = retry
        self.framer = Framer("cr", gap=gap_ms / 1000, max_len=max_len, min_len=min_len)
        self._waker: Waker | None = None  # one per iteration, for close() to wake it

    def _read(self) -> Generator[Scan, None, None]:
        device: _InputDevice | None = None
        keys = KeyMap()
        self._waker = waker = Waker()
        try:
            while not self._closed.is_set():
                if device is None:
                    device = self._open()
                    if device is None:
                        self._closed.wait(self.retry)
                        continue
                    keys = KeyMap()
                deadline = self.framer.deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    watched: list[_InputDevice | Waker] = [device, waker]
                    ready, _, _ = select.select(watched, [], [], timeout)
                    events = device.read() if device in ready else ()
                    data = keys.feed((e.type, e.code, e.value) for e in events)
                except BlockingIOError:
                    continue  # woken with nothing to read
                except OSError as exc:  # unplugged: ENODEV
                    log.warning("%s: keyboard lost (%s); reconnecting", self.source, exc)
                    self._offline(str(exc))
                    self.framer.reset()
                    device.close()
                    device = None
                    continue
                now = time.monotonic()
                yield from self._scans(
                    self.framer.feed(data, now) if data else self.framer.expire(now)
                )
        finally:
            if device is not None:
                device.close()
            waker.close()

    def _open(self) -> _InputDevice | None:
        try:
            device: _InputDevice = self._evdev.InputDevice(self.path)
        except OSError as exc:
            self._note_failure(exc)
            return None
        try:
            if self.grab:
                device.grab()  # EBUSY: another program holds it
        except OSError as exc:
            device.close()
            self._note_failure(exc)
            return None
        self._online()
        return device

    def _note_failure(self, exc: OSError) -> None:
        if self._error(str(exc)):
            log.warning("%s: cannot open (%s); retrying", self.source, exc)

    def _wake(self) -> None:
        waker = self._waker
        if waker is not None:
            waker.wake()
