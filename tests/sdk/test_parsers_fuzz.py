"""Property tests for the parsers that the existing suites leave open, and regressions that the
harnesses in ``fuzz/`` found: each input here once escaped its parser as an untyped exception."""

from __future__ import annotations

import cbor2
import pytest

from passgate import cose
from passgate.denylist import FormatError, _head, read_signed
from passgate.keys import TrustStore

# --- regressions found by fuzz/ ------------------------------------------------------------


@pytest.mark.parametrize("alg", [[1], {}, {-8: 1}], ids=["list", "map", "map-with-key"])
def test_unhashable_alg_is_unsupported_not_a_type_error(alg: object) -> None:
    """fuzz_cose: ``Sign1.alg`` looked an unhashable header value up in a dict (TypeError)."""
    envelope = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: alg}), {}, b"", b""]))
    with pytest.raises(cose.UnsupportedAlgorithmError):
        _ = cose.decode_sign1(envelope).alg
    with pytest.raises(FormatError):  # a deny list reads alg before any signature check
        read_signed(_head(envelope), TrustStore())


def test_float_alg_is_not_taken_for_an_integer_one() -> None:
    """-8.0 hashes like -8 (EdDSA); COSE algorithms are integers, so it is unsupported."""
    envelope = cbor2.dumps([cbor2.dumps({1: -8.0}), {}, b"", b""])
    with pytest.raises(cose.UnsupportedAlgorithmError):
        _ = cose.decode_sign1(envelope).alg
