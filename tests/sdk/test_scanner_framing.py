"""The pure framing and dedupe pieces: examples plus a Hypothesis property over any bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from passgate.scanners import Dedupe, Framer
from passgate.scanners.framing import STALE_S
from tests.helpers import examples


def texts(frames) -> list[bytes]:
    return [f.data for f in frames if not f.error]


def test_gap_frame_is_complete_when_the_gap_expires() -> None:
    framer = Framer("gap", gap=0.05)
    assert framer.feed(b"PG1:", 10.0) == []
    assert framer.feed(b"ABC", 10.01) == []
    assert framer.deadline() == 10.01 + 0.05
    assert framer.expire(10.05) == []  # not yet
    (frame,) = framer.expire(10.2)
    assert (frame.data, frame.t) == (b"PG1:ABC", 10.01 + 0.05)  # t is when the gap ended
    assert framer.deadline() is None


def test_terminator_with_gap_ends_on_either() -> None:
    framer = Framer("cr", gap=0.1)
    assert texts(framer.feed(b"ONE\rTW", 1.0)) == [b"ONE"]
    assert texts(framer.expire(1.2)) == [b"TW"]


def test_stale_partial_line_is_dropped_not_glued_to_the_next_scan() -> None:
    framer = Framer("cr")
    assert framer.feed(b"\x00garbage", 1.0) == []
    (dropped,) = framer.expire(1.0 + STALE_S)
    assert dropped.error
    assert texts(framer.feed(b"PG1:OK\r", 5.0)) == [b"PG1:OK"]


def test_overlong_line_is_reported_once_and_skipped_to_its_end() -> None:
    framer = Framer("lf", max_len=8)
    frames = framer.feed(b"123456", 1.0) + framer.feed(b"7890ABC", 1.0) + framer.feed(b"\nOK\n", 1.0)
    assert [f.error is not None for f in frames] == [True, False]
    assert frames[1].data == b"OK"


def test_a_crlf_split_across_two_reads_still_ends_the_line() -> None:
    """A USB packet or a serial read can end between the CR and the LF: the scan must not be lost,
    nor the next one glued to it."""
    stream = b"PG1:ONE\r\nPG1:TWO\r\nPG1:THREE\r\n"
    for cut in range(1, len(stream)):
        framer = Framer("crlf")
        lines = texts(framer.feed(stream[:cut], 1.0) + framer.feed(stream[cut:], 1.0))
        assert lines == [b"PG1:ONE", b"PG1:TWO", b"PG1:THREE"], cut
    framer = Framer("crlf")
    assert texts(framer.feed(b"PG1:A\r", 1.0) + framer.feed(b"\r", 1.0) + framer.feed(b"\nB\r\n", 1.0)) == [
        b"PG1:A", b"B"]  # a lone CR before the CRLF stays in the line (and is stripped at its end)


@settings(max_examples=examples(100, 300), deadline=None)
@given(st.lists(st.text("PG1:ABC\r\n", max_size=20), max_size=8), st.data())
def test_lines_do_not_depend_on_where_the_reads_end(parts, data) -> None:
    stream = "".join(parts).encode()
    for framing in ("any", "cr", "lf", "crlf"):
        whole = Framer(framing)
        expected = texts(whole.feed(stream, 1.0) + whole.flush(1.0))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
        split, last = Framer(framing), 0
        got = []
        for cut in [*cuts, len(stream)]:
            got += texts(split.feed(stream[last:cut], 1.0))
            last = cut
        assert got + texts(split.flush(1.0)) == expected, (framing, stream, cuts)


def test_flush_at_end_of_stream() -> None:
    framer = Framer()
    assert framer.feed(b"LAST", 1.0) == []
    assert texts(framer.flush(2.0)) == [b"LAST"]
    assert framer.flush(3.0) == []


chunks = st.lists(st.binary(max_size=64), max_size=30)


@settings(max_examples=examples(100, 300), deadline=None)
@given(
    chunks,
    st.sampled_from(["any", "cr", "lf", "crlf", "gap"]),
    st.lists(st.floats(0, 0.5), min_size=30, max_size=30),
)
def test_any_byte_chunks_never_crash_and_lines_stay_bounded(chunks, framing, delays) -> None:
    framer = Framer(framing, max_len=32)
    now, frames = 0.0, []
    for chunk, delay in zip(chunks, delays, strict=False):
        now += delay
        frames += framer.feed(chunk, now)
        assert framer.pending <= 32
    frames += framer.expire(now + 10) + framer.flush(now + 10)
    for frame in frames:
        assert len(frame.data) <= 32
        assert (frame.error is None) == bool(frame.data)
        if frame.data:
            assert b"\r" not in frame.data and b"\n" not in frame.data
            frame.data.decode("utf-8")  # only valid UTF-8 is passed on


def test_dedupe_window_slides_while_the_code_stays_in_view() -> None:
    dedupe = Dedupe(2.0)
    assert not dedupe.seen(b"A", 0.0)
    assert all(dedupe.seen(b"A", t / 10) for t in range(1, 50))  # held 5 s, seen every 0.1 s
    assert not dedupe.seen(b"B", 5.0)
    assert not dedupe.seen(b"A", 8.0)  # out of view for 3 s: a new scan


def test_dedupe_memory_is_bounded() -> None:
    dedupe = Dedupe(60.0, max_entries=10)
    for i in range(1000):
        dedupe.seen(b"%d" % i, i / 1000)
    assert len(dedupe._last) <= 10
