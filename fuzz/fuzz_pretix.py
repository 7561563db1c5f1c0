"""Fuzz the pretix_sig1 verifier: only ``PassRefused`` may leave it, and nothing verifies unless signed.

The first input byte picks how the rest reaches ``verify_sig1``:

- 0: as the scanned text itself (whitespace, Base64, reversal);
- 1: as the bytes inside a secret, Base64-encoded and reversed here (so mutations land in the
  version, the declared lengths, the protobuf payload and the signature);
- 2: as a protobuf payload the harness signs with a trusted key: it verifies or is refused as
  unreadable, expired or not yet valid, but must never raise anything else (the protobuf decoder
  on content no random mutation could get signed).

``decode_sig1`` and ``is_sig1`` get every input too and may not raise either (``decode_sig1`` only
``PassRefused``).

Forgery oracle (modes 0 and 1): a ticket that verifies must carry exactly the signed payload of one
of the seeds below and decode to that seed's ticket.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib

from cryptography.hazmat.primitives.asymmetric import ed25519

from fuzz.common import ATTACKER_KEY, ED25519_KEY, NOW, Forgery, main
from passgate.passes import PassRefused
from passgate.pretix import (
    PretixTicket,
    decode_sig1,
    event_keys_resource,
    is_sig1,
    issue_sig1,
    load_event_keys,
    verify_sig1,
)
from passgate.reasons import Reason

# The event's keys: the fixed issuer key and a second one, as after a rotation.
ROTATED_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"passgate fuzz pretix rotated").digest())
KEYS = load_event_keys(event_keys_resource([ED25519_KEY, ROTATED_KEY]))
TEXT, RAW, SIGN = 0, 1, 2
HOUR = 3600
SIGNED_REFUSALS = {Reason.UNREADABLE, Reason.NOT_YET_VALID, Reason.EXPIRED}


def _raw(secret: str) -> bytes:
    return base64.b64decode(secret[::-1])


def _text(raw: bytes) -> bytes:
    return base64.b64encode(raw)[::-1]


def _payload(secret: str) -> bytes:
    raw = _raw(secret)
    return raw[5 : 5 + int.from_bytes(raw[1:3], "big")]


def _valid_secrets() -> list[str]:
    return [
        issue_sig1(ED25519_KEY, seed="CTJqJOl1H", item=1),
        issue_sig1(ED25519_KEY, seed="aaaaaaaaa", item=42, variation=7, subevent=14,
                   valid_from=NOW - HOUR, valid_until=NOW + HOUR),
        issue_sig1(ROTATED_KEY, seed="Zx9", item=2**40, subevent=3, valid_until=NOW + HOUR),
        issue_sig1(ROTATED_KEY, seed="é🎫", item=5, valid_from=NOW - HOUR),
    ]


def _seed_tickets() -> dict[bytes, PretixTicket]:
    """Signed payload of every valid seed, mapped to the ticket it verifies to."""
    return {_payload(s): verify_sig1(s, KEYS, now=NOW) for s in _valid_secrets()}


SEED_TICKETS = _seed_tickets()


def seeds() -> dict[str, bytes]:
    """Seed inputs: valid tickets as texts and as bytes, near-misses and a payload to sign."""
    secrets = _valid_secrets()
    out: dict[str, bytes] = {}
    for i, secret in enumerate(secrets):
        out[f"text-{i}"] = bytes([TEXT]) + secret.encode()
        out[f"raw-{i}"] = bytes([RAW]) + _raw(secret)
    out["text-newline"] = bytes([TEXT]) + (" " + secrets[1] + "\r\n").encode()
    out["raw-attacker"] = bytes([RAW]) + _raw(issue_sig1(ATTACKER_KEY, seed="CTJqJOl1H", item=1))
    expired = issue_sig1(ED25519_KEY, seed="old", item=1, valid_until=NOW - HOUR)
    out["raw-expired"] = bytes([RAW]) + _raw(expired)
    out["text-pg1"] = bytes([TEXT]) + b"PG1:6BFOXN*TS0BI$ZDFRH"
    out["sign-payload"] = bytes([SIGN]) + _payload(secrets[1])
    return out


def _sign(payload: bytes) -> bytes:
    """A secret around any payload, signed with the trusted key (lengths up to 65,535 bytes)."""
    payload = payload[:0xFFFF]
    signature = ED25519_KEY.sign(payload)
    return _text(b"\x01" + len(payload).to_bytes(2, "big") + len(signature).to_bytes(2, "big")
                 + payload + signature)


def test_one_input(data: bytes) -> None:
    """One input: only ``PassRefused`` may escape; a verified ticket must be a seed's."""
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    candidate = rest if mode == TEXT else _sign(rest) if mode == SIGN else _text(rest)
    is_sig1(candidate)
    with contextlib.suppress(PassRefused):
        decode_sig1(candidate)
    try:
        result = verify_sig1(candidate, KEYS, now=NOW)
    except PassRefused as refused:
        if mode == SIGN and refused.reason not in SIGNED_REFUSALS:
            raise AssertionError(f"a signed payload was refused as {refused.reason}") from None
        return
    if mode == SIGN:
        return
    payload = _payload(candidate.decode("ascii").strip())
    if SEED_TICKETS.get(payload) != result:
        raise Forgery(f"verified without a valid signature: {candidate[:200]!r}")


if __name__ == "__main__":
    main(test_one_input)
