"""Fuzz Base45 decoding: only ``Base45Error``, and whatever decodes re-encodes to the same text.

RFC 9285 gives every byte string exactly one encoding, so a decoder that accepts two spellings of
the same bytes (or returns bytes that encode differently) has a bug even if it never crashes.
"""

from __future__ import annotations

from fuzz.common import main
from passgate.base45 import Base45Error, decode, encode


def seeds() -> dict[str, bytes]:
    """Seed inputs: the RFC 9285 examples, a pass-sized body, every alphabet character."""
    return {
        "rfc-ab": b"BB8",
        "rfc-hello": b"%69 VD92EX0",
        "rfc-ietf": b"UJCLQE7W581",
        "pair": b"GH",
        "alphabet": b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:",
        "body": encode(bytes(range(256))).encode(),
    }


def test_one_input(data: bytes) -> None:
    """One input as bytes and as text: the same result, and decoding is canonical."""
    try:
        decoded = decode(data)
    except Base45Error:
        decoded = None
    try:
        as_text = decode(data.decode("latin-1"))
    except Base45Error:
        as_text = None
    assert as_text == decoded, "bytes and str inputs decode differently"
    if decoded is not None:
        assert encode(decoded).encode() == data, "accepted a non-canonical encoding"
    assert decode(encode(data)) == data


if __name__ == "__main__":
    main(test_one_input)
