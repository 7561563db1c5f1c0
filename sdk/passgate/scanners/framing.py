"""Bytes to frames, with no I/O: the part of a scanner source worth fuzzing.

Like pyserial's ``serial.threaded`` split (the reader thread reads bytes, a Packetizer finds
frames), ``Framer`` only receives chunks with the time they arrived and returns complete frames
with the time each one became complete. The sources own the reading and the threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FRAMINGS = ("any", "cr", "lf", "crlf", "gap")
_TERMINATORS = {"any": rb"[\r\n]", "cr": rb"\r", "lf": rb"\n", "crlf": rb"\r\n"}
# An AIM symbology identifier that scanners may prefix: "]" + code letter + modifier (]Q1, ]C0).
_AIM = re.compile(rb"\][A-Za-z][0-9A-Za-z]")
# Control characters a real code may carry: TAB, EOT/GS/RS (ISO 15434 and GS1 separators).
_BAD_CONTROL = re.compile(rb"[\x00-\x03\x05-\x08\x0a-\x1c\x1f\x7f]")
STALE_S = 1.0  # a partial line with no terminator for this long is noise


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete frame: ``data`` (terminator and AIM id removed) complete at ``t``; when
    ``error`` is set the frame was rejected (noise, over-long, not UTF-8) and ``data`` is empty."""

    data: bytes
    t: float
    error: str | None = None


class Framer:
    """Split a byte stream into lines.

    ``framing``: ``any`` (CR or LF, the default: CRLF then also gives one line), ``cr``, ``lf``,
    ``crlf``, or ``gap`` (no terminator: a line ends after ``gap`` seconds of silence). ``gap``
    may also be given with a terminator framing: then either ends a line (a keyboard wedge that
    sometimes omits Enter). Without a gap, a partial line left silent for ``STALE_S`` is dropped
    as noise so it cannot corrupt the next scan. Lines longer than ``max_len`` are dropped whole,
    and lines shorter than ``min_len`` are dropped as noise: binary noise on a serial line throws
    off short printable fragments between stray CR/LF bytes, and those would otherwise count as
    scans (and against the flood limit that protects good ones).
    """

    def __init__(
        self,
        framing: str = "any",
        *,
        gap: float | None = None,
        max_len: int = 4096,
        min_len: int = 1,
        strip_aim: bool = True,
    ) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing {framing!r}: use one of {FRAMINGS}")
        if framing == "gap" and not gap:
            gap = 0.05
        if gap is not None and gap <= 0:
            raise ValueError("gap must be positive")
        self.framing = framing
        self.gap = gap
        self.max_len = max_len
        self.min_len = min_len
        self.strip_aim = strip_aim
        self._end = re.compile(_TERMINATORS[framing]) if framing != "gap" else None
        self._buf = bytearray()
        self._overflow = False  # skipping the rest of an over-long line
        self._last = 0.0  # arrival time of the newest pending byte
        self._split_crlf = False  # the last read ended in the CR of a CRLF

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete line (never more than ``max_len``)."""
        return len(self._buf)

    def deadline(self) -> float | None:
        """When ``expire`` has work to do: a gap ends or a partial line goes stale."""
        if not self._buf and not self._overflow:
            return None
        return self._last + (self.gap if self.gap is not None else STALE_S)

    def feed(self, data: bytes, now: float) -> list[Frame]:
        """Add a chunk that arrived at ``now``; return the frames it completed."""
        frames = self.expire(now)
        if not data:
            return frames
        self._last = now
        start = 0
        if self._split_crlf and data[:1] == b"\n":  # the CR came in the read before: the line ends here
            frames += self._take(b"", now, complete=True)
            start = 1
        if self._end is not None:
            for match in self._end.finditer(data, start):
                frames += self._take(data[start : match.start()], now, complete=True)
                start = match.end()
        frames += self._take(data[start:], now, complete=False)
        # a CRLF can arrive in two reads (a USB packet or a serial read boundary between the bytes)
        self._split_crlf = self.framing == "crlf" and data[-1:] == b"\r" and start < len(data)
        return frames

    def expire(self, now: float) -> list[Frame]:
        """Frames completed by the passing of time (call when ``deadline()`` is reached)."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        if self.gap is None:
            overflowed = self._overflow  # already reported when it overflowed
            self.reset()
            return [] if overflowed else [Frame(b"", deadline, "partial line without terminator")]
        return self._take(b"", deadline, complete=True)

    def flush(self, now: float) -> list[Frame]:
        """End of stream: the pending partial line is a frame."""
        return self._take(b"", now, complete=True) if self._buf or self._overflow else []

    def reset(self) -> None:
        """Forget any partial line (the port was lost)."""
        self._buf.clear()
        self._overflow = False
        self._split_crlf = False

    def _take(self, chunk: bytes, now: float, *, complete: bool) -> list[Frame]:
        frames = []
        if not self._overflow:
            if len(self._buf) + len(chunk) > self.max_len:
                self._buf.clear()
                self._overflow = True
                frames.append(Frame(b"", now, f"line longer than {self.max_len} bytes"))
            else:
                self._buf += chunk
        if complete:
            line = bytes(self._buf)
            overflowed = self._overflow
            self.reset()
            if not overflowed:
                frames += self._check(line, now)
        return frames

    def _check(self, line: bytes, now: float) -> list[Frame]:
        line = line.strip(b"\r\n")
        if self.strip_aim and _AIM.match(line):
            line = line[3:]
        if not line:
            return []  # a bare terminator (the LF of a CRLF in "any" framing) is not a scan
        if _BAD_CONTROL.search(line):
            return [Frame(b"", now, "binary noise (control characters)")]
        if len(line) < self.min_len:
            return [Frame(b"", now, f"noise (shorter than {self.min_len} bytes)")]
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return [Frame(b"", now, "not UTF-8")]
        return [Frame(line, now)]
