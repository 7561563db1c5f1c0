"""Fuzz scanner framing: any bytes in any chunking and timing give well-formed frames, no crash.

The input is a little program for one ``Framer``: byte 0 picks the framing and whether a gap is
set, byte 1 the maximum line length, then each chunk is a header byte (length in the low 6 bits,
a delay step in the top 2) followed by that many bytes. Framing raises nothing typed, so any
exception is a crash; every frame must also be something a pass verifier may safely receive.
"""

from __future__ import annotations

from fuzz.common import main
from passgate.scanners.framing import FRAMINGS, STALE_S, Frame, Framer

DELAYS = (0.0, 0.01, 0.2, 2 * STALE_S)  # same burst, within a gap, past a gap, past stale


def seeds() -> dict[str, bytes]:
    """Seed inputs: a CRLF scan with an AIM id, split lines, noise, a gap-framed wedge."""
    def program(config: int, max_len: int, *chunks: tuple[int, bytes]) -> bytes:
        return bytes([config, max_len]) + b"".join(bytes([delay << 6 | len(c)]) + c for delay, c in chunks)

    return {
        "crlf-aim": program(0, 64, (0, b"]Q1PG1:6BFOXN*TS0BI$ZDYSHT\r\n")),
        "split": program(1, 64, (0, b"PG1:ABC"), (1, b"DEF\r"), (3, b"late\r")),
        "noise": program(0, 16, (0, b"\x00\xff\xfe\n"), (0, b"x" * 40 + b"\n")),
        "gap": program(4 + 5, 64, (0, b"PG1:"), (1, b"ABC"), (2, b"NEXT")),
        "crlf-gap": program(3 + 5, 8, (0, b"123\r"), (0, b"\n456"), (3, b"")),
    }


def _check(frame: Frame, max_len: int, previous: float) -> None:
    assert frame.t >= previous, "frames out of time order"
    assert (frame.error is None) == bool(frame.data), f"data and error disagree: {frame!r}"
    assert len(frame.data) <= max_len
    assert b"\r" not in frame.data and b"\n" not in frame.data
    frame.data.decode("utf-8")  # only UTF-8 text is passed on


def test_one_input(data: bytes) -> None:
    """Run one program; check the pending bound after each chunk and every frame produced."""
    if len(data) < 2:
        return
    framing = FRAMINGS[data[0] % len(FRAMINGS)]
    gap = 0.05 if data[0] // len(FRAMINGS) % 2 else None
    max_len = 1 + data[1] % 64
    framer = Framer(framing, gap=gap, max_len=max_len, strip_aim=bool(data[0] & 0x80))
    frames: list[Frame] = []
    now, pos = 0.0, 2
    while pos < len(data):
        size, now = data[pos] & 0x3F, now + DELAYS[data[pos] >> 6]
        deadline = framer.deadline()
        if deadline is not None and deadline <= now:
            frames += framer.expire(deadline)
        frames += framer.feed(data[pos + 1 : pos + 1 + size], now)
        assert framer.pending <= max_len
        pos += 1 + size
    frames += framer.flush(now + 10)
    assert framer.pending == 0 and framer.deadline() is None
    previous = 0.0
    for frame in frames:
        _check(frame, max_len, previous)
        previous = frame.t


if __name__ == "__main__":
    main(test_one_input)
