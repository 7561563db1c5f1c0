"""Base45 against RFC 9285's examples, plus round-trip and refusal properties."""

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
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
