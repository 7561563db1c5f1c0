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
