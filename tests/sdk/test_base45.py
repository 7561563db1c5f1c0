"""Base45 against RFC 9285's examples, plus round-trip and refusal properties."""

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passgate import base45

VECTORS = json.loads((Path(__file__).parents[1] / "vectors/base45/rfc9285.json").read_text())


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda c: c["base45"])
def test_rfc9285_examples(case: dict[str, str]) -> None:
    raw = case["bytes_utf8"].encode()
    assert base45.encode(raw) == case["base45"]
    assert base45.decode(case["base45"]) == raw


@pytest.mark.parametrize("text", VECTORS["invalid"])
def test_rfc9285_invalid_strings_are_refused(text: str) -> None:
    with pytest.raises(base45.Base45Error):
        base45.decode(text)


@pytest.mark.parametrize("text", ["abc", "A\u00e9B", "AB\x00", "ÿÿÿ"])
def test_characters_outside_the_alphabet_are_refused(text: str) -> None:
    with pytest.raises(base45.Base45Error):
        base45.decode(text)


@given(st.binary(max_size=300))
def test_round_trip(data: bytes) -> None:
    text = base45.encode(data)
    assert set(text) <= set(base45.ALPHABET)
    assert base45.decode(text) == data


@given(st.text(max_size=60))
def test_decode_only_raises_base45_error(text: str) -> None:
    with contextlib.suppress(base45.Base45Error):
        base45.decode(text)


def test_the_edges_of_the_alphabet_and_the_ranges() -> None:
    assert base45.decode("FGW") == b"\xff\xff"  # 65535: the largest triplet
    assert base45.decode("U5") == b"\xff"  # 255: the largest final pair
    with pytest.raises(base45.Base45Error, match=r"^Base45 triplet above 65535$"):
        base45.decode("GGW")
    with pytest.raises(base45.Base45Error, match=r"^Base45 final pair above 255$"):
        base45.decode("V5")
    with pytest.raises(base45.Base45Error, match=r"^character outside the Base45 alphabet$"):
        base45.decode("AB!")
    with pytest.raises(base45.Base45Error, match=r"^non-ASCII character in Base45 text$"):
        base45.decode("ABÄ")
    with pytest.raises(base45.Base45Error, match=r"^Base45 text length leaves a single character$"):
        base45.decode("ABCD")
    assert base45.decode(b"BB8") == base45.decode("BB8") == b"AB"  # bytes in, as a scanner gives them
    assert base45.encode(b"\xff\xff\xff") == "FGWU5" and base45.decode("") == b""


def _reference_decode(text: str) -> bytes:
    """RFC 9285 section 4.2, a triplet at a time: what the hand-written decoder must agree with."""
    if not text.isascii():
        raise base45.Base45Error("non-ASCII character in Base45 text")
    if any(c not in base45.ALPHABET for c in text):
        raise base45.Base45Error("character outside the Base45 alphabet")
    if len(text) % 3 == 1:
        raise base45.Base45Error("Base45 text length leaves a single character")
    values = [base45.ALPHABET.index(c) for c in text]
    out = bytearray()
    for i in range(0, len(values) - 2, 3):
        n = values[i] + 45 * values[i + 1] + 2025 * values[i + 2]
        if n > 0xFFFF:
            raise base45.Base45Error("Base45 triplet above 65535")
        out += n.to_bytes(2, "big")
    if len(values) % 3 == 2:
        n = values[-2] + 45 * values[-1]
        if n > 0xFF:
            raise base45.Base45Error("Base45 final pair above 255")
        out.append(n)
    return bytes(out)


@given(st.text(alphabet=base45.ALPHABET, max_size=600) | st.text(max_size=20))
@settings(max_examples=500)
def test_decode_agrees_with_the_rfc_a_triplet_at_a_time(text: str) -> None:
    """Every lane of the one-integer decoder is exact: the same bytes or the same refusal as the
    RFC's triplet loop, for any text (most over the alphabet, so triplets above 65535 come up)."""
    try:
        expected: bytes | str = _reference_decode(text)
    except base45.Base45Error as exc:
        expected = str(exc)
    try:
        got: bytes | str = base45.decode(text)
    except base45.Base45Error as exc:
        got = str(exc)
    assert got == expected
