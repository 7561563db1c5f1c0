"""Fuzz what an OSDP reader can send the gate: card reads and manufacturer replies in any order,
with any content and any pause between them, become scans, refusals or drops, never an exception
or a payload the reader did not send whole.

The input is a little program for one bus: each record is a header byte (the low 2 bits the kind:
a card read, a manufacturer reply, a pause past ``part_timeout``; the rest a length) and that many
bytes (for a card read, its first byte picks the format and whether the bit length is whole bytes).
The oracle: a code scan's bytes are the text of one card read, or the chunks of one message's parts
in order 0..count-1 with nothing between them from that reader; every other outcome is an
``INCOMPLETE`` scan with empty bytes, a ``CARD`` scan, or a counted drop.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from fuzz.common import main
from passgate.scanners import Scan, ScanKind
from passgate.scanners.osdp import PART_HEADER, PART_MAGIC, OsdpScanner, encode_parts, store_key

CARD, REPLY, PAUSE = 0, 1, 2
_KEYS = Path(tempfile.mkdtemp(prefix="passgate-fuzz-osdp-")) / "osdp.keys"
store_key(_KEYS, 1, secrets.token_bytes(16))
SOURCE = OsdpScanner("/dev/null?addr=1:entry", keys=str(_KEYS), max_len=512)
READER = SOURCE.readers[1]


def _record(kind: int, body: bytes) -> bytes:
    return bytes([len(body) << 2 | kind]) + body


def seeds() -> dict[str, bytes]:
    """A pass in parts, a short code, a Wiegand card, a lost part, a late part, noise."""
    text = b"PG1:" + b"6BFOXN*TS0BI$ZDYSHT" * 6
    parts = encode_parts(text, 3, 40)
    return {
        "parts": b"".join(_record(REPLY, p) for p in parts),
        "short-code": _record(CARD, b"\x00PG1:ABCDEF"),
        "wiegand": _record(CARD, b"\x01\x12\x34\x56\x40"),
        "lost-part": _record(REPLY, parts[0]) + _record(REPLY, parts[2]),
        "late-part": _record(REPLY, parts[0]) + _record(PAUSE, b"")
        + b"".join(_record(REPLY, p) for p in parts[1:]),
        "noise": _record(REPLY, PART_MAGIC + b"\x00\x05\x02") + _record(REPLY, b"vendor status"),
    }


def _events(data: bytes) -> list[tuple[int, bytes]]:
    events, pos = [], 0
    while pos < len(data):
        kind, size = data[pos] & 3, data[pos] >> 2
        events.append((kind, data[pos + 1: pos + 1 + size]))
        pos += 1 + size
    return events


def test_one_input(data: bytes) -> None:
    """Run one program through the source's own handlers; check every scan against the oracle."""
    osdp = SOURCE._osdp
    SOURCE._messages.clear()
    SOURCE._broken.clear()
    now = 0.0
    scans: list[Scan] = []
    whole: set[bytes] = set()  # what the reader sent complete: a card read's text, a message in order
    run: list[bytes] = []  # the current message's parts in order, as the oracle sees them
    for kind, body in _events(data):
        if kind == PAUSE or kind == 3:
            now += SOURCE.part_timeout + 1
            scans += SOURCE._expire(now)
            run = []
            continue
        if kind == CARD:
            fmt = osdp.CardFormat.Wiegand if body[:1] and body[0] & 1 else osdp.CardFormat.Unspecified
            bits = 8 * len(body[1:]) - (1 if body[:1] and body[0] & 2 else 0)
            scans.append(SOURCE._card(READER, {"format": fmt, "length": bits, "data": body[1:]}, now))
            whole.add(body[1:])
            continue
        if len(body) >= PART_HEADER and body.startswith(PART_MAGIC) and body[4] and body[3] < body[4]:
            run = [body] if body[3] == 0 else [*run, body]
            numbers = {part[2] for part in run}
            indices = [part[3] for part in run]
            if len(numbers) == 1 and indices == list(range(len(run))) and len(run) == body[4]:
                whole.add(b"".join(part[PART_HEADER:] for part in run))
        scans += SOURCE._part(READER, body, now)
    scans += SOURCE._expire(now + SOURCE.part_timeout + 1)
    for scan in scans:
        assert scan.reader == READER.name and scan.direction == "entry"
        if scan.kind is ScanKind.CODE:
            assert scan.bytes in whole, f"a code the reader never sent whole: {scan.bytes!r}"
            assert len(scan.bytes) <= SOURCE.max_len
        elif scan.kind is ScanKind.INCOMPLETE:
            assert scan.bytes == b"" and scan.detail
        else:
            assert scan.kind is ScanKind.CARD


if __name__ == "__main__":
    main(test_one_input)
