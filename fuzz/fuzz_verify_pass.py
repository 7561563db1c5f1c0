"""Fuzz ``verify_pass``: only ``PassRefused`` may leave it, and nothing verifies unless signed.

The first input byte picks how the rest reaches the verifier:

- 0: as the scanned text itself (the prefix, Base45, case and whitespace handling);
- 1: as the COSE body, Base45-encoded behind ``PG1:`` (so mutations land in the CBOR structure);
- 2: as a CWT payload the harness signs with a trusted key: it verifies or is refused as
  unreadable, expired or not yet valid, but must never raise anything else (the claim checks and
  the time-window messages on content no random mutation could get signed).

Forgery oracle (modes 0 and 1): a pass that verifies must carry exactly the signed content of one
of the seeds below and decode to that seed's claims.
"""

from __future__ import annotations

import contextlib
import zlib

import cbor2

from fuzz.common import ATTACKER_KEY, ED25519_KEY, ES256_KEY, NOW, Forgery, main, signed_content, trust_store
from passgate import base45, cose, issue_pass, key_id
from passgate.passes import (
    CLAIM_CTI,
    CLAIM_EXP,
    CLAIM_NBF,
    PREFIX,
    Pass,
    PassRefused,
    decode_text,
    verify_pass,
)

TRUST = trust_store()
TEXT, BODY, SIGN = 0, 1, 2
HOUR = 3600


def _body(text: str) -> bytes:
    return base45.decode(text[len(PREFIX) :])


def _issue(key: cose.PrivateKey, n: int, **claims: object) -> str:
    return issue_pass(key, valid_from=NOW - HOUR, valid_until=NOW + HOUR, issued_at=NOW - 2 * HOUR,
                      pass_id=bytes([n]) * 16, **claims)  # type: ignore[arg-type]


def _valid_texts() -> list[str]:
    typical = {"zones": ["A", "B"], "entries": 1, "product": "Day", "issuer": "Fuzz",
               "holder_ref": b"\x01\x02", "reentry": True}
    return [_issue(ED25519_KEY, 1), _issue(ED25519_KEY, 2, **typical), _issue(ES256_KEY, 3),
            _issue(ES256_KEY, 4, **typical)]


def _refused_bodies(valid: list[bytes]) -> dict[str, bytes]:
    """Near-misses worth mutating: forged kid, alg only unprotected, alg swapped, expired."""
    msg = cose.decode_sign1(valid[0])
    claims = {CLAIM_NBF: NOW - HOUR, CLAIM_EXP: NOW + HOUR, CLAIM_CTI: bytes(16)}
    unprotected_alg = [cbor2.dumps({cose.HEADER_KID: msg.kid}), {cose.HEADER_ALG: msg.alg},
                       msg.payload, msg.signature]
    swapped_alg = [cbor2.dumps({cose.HEADER_ALG: cose.ES256, cose.HEADER_KID: msg.kid}), {},
                   msg.payload, msg.signature]
    expired = issue_pass(ED25519_KEY, valid_from=NOW - 2 * HOUR, valid_until=NOW - HOUR,
                         issued_at=NOW - 3 * HOUR, pass_id=bytes(16))
    return {
        "forged-kid": cose.sign1(cbor2.dumps(claims), ATTACKER_KEY, kid=key_id(ED25519_KEY)),
        "alg-unprotected": cbor2.dumps(cbor2.CBORTag(cose.SIGN1_TAG, unprotected_alg)),
        "alg-swapped": cbor2.dumps(cbor2.CBORTag(cose.SIGN1_TAG, swapped_alg)),
        "expired": _body(expired),
    }


def _seed_passes() -> dict[tuple[bytes, bytes], Pass]:
    """Signed content of every valid seed, mapped to the claims it verifies to."""
    return {signed_content(_body(t)): verify_pass(t, TRUST, now=NOW) for t in _valid_texts()}


SEED_PASSES = _seed_passes()


def seeds() -> dict[str, bytes]:
    """Seed inputs: valid passes in every accepted encoding, near-misses and a payload to sign."""
    texts = _valid_texts()
    bodies = [_body(t) for t in texts]
    out: dict[str, bytes] = {}
    for i, (text, body) in enumerate(zip(texts, bodies, strict=True)):
        out[f"text-{i}"] = bytes([TEXT]) + text.encode()
        out[f"body-{i}"] = bytes([BODY]) + body
    out["text-lower"] = bytes([TEXT]) + (" " + texts[1].lower() + "\r\n").encode()
    out["body-untagged"] = bytes([BODY]) + bodies[0][1:]
    out["body-zlib"] = bytes([BODY]) + zlib.compress(bodies[1], 9)
    for name, body in _refused_bodies(bodies).items():
        out[f"body-{name}"] = bytes([BODY]) + body
    out["sign-claims"] = bytes([SIGN]) + cose.decode_sign1(bodies[1]).payload
    return out


def test_one_input(data: bytes) -> None:
    """One input: only ``PassRefused`` may escape; a verified pass must be a seed's."""
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == SIGN:
        text = PREFIX + base45.encode(cose.sign1(rest, ED25519_KEY, kid=key_id(ED25519_KEY)))
        with contextlib.suppress(PassRefused):
            verify_pass(text, TRUST, now=NOW)
        return
    candidate: bytes = rest if mode == TEXT else (PREFIX + base45.encode(rest)).encode()
    try:
        result = verify_pass(candidate, TRUST, now=NOW)
    except PassRefused:
        return
    content = signed_content(decode_text(candidate))
    if SEED_PASSES.get(content) != result:
        raise Forgery(f"verified without a valid signature: {candidate[:200]!r}")


if __name__ == "__main__":
    main(test_one_input)
