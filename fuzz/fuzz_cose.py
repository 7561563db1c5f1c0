"""Fuzz COSE_Sign1 decoding and verification: only ``CoseError``, and no unsigned content verifies.

Every decoded message also has its ``alg``, ``kid`` and Sig_structure read, because those run on
attacker-controlled header values before any signature is checked (deny lists read ``alg`` right
after decoding). Verification is tried with both trusted keys, with and without the deny-list AAD.
"""

from __future__ import annotations

import cbor2

from fuzz.common import ATTACKER_KEY, ED25519_KEY, ES256_KEY, TRUSTED_KEYS, Forgery, main, signed_content
from passgate import cose
from passgate.denylist import AAD

AADS = (b"", AAD)


def _signed() -> dict[str, tuple[bytes, bytes]]:
    """name: (message, external AAD it was signed with), for every trusted key and AAD."""
    out = {}
    for alg, key in (("ed25519", ED25519_KEY), ("es256", ES256_KEY)):
        for aad_name, aad in (("plain", b""), ("aad", AAD)):
            payload = cbor2.dumps({1: "fuzz", 7: bytes(16)})
            out[f"{alg}-{aad_name}"] = (cose.sign1(payload, key, kid=b"kid-" + alg.encode(),
                                                   external_aad=aad), aad)
    out["untagged"] = (cose.sign1(b"\xa0", ED25519_KEY, tagged=False), b"")
    return out


SIGNED = {(*signed_content(message), aad) for message, aad in _signed().values()}


def seeds() -> dict[str, bytes]:
    """Seed inputs: signed messages (one untagged), an untrusted signer, odd header shapes."""
    out = {name: message for name, (message, _) in _signed().items()}
    out["untrusted"] = cose.sign1(b"\xa0", ATTACKER_KEY, kid=b"kid-ed25519")
    out["empty-protected"] = cbor2.dumps([b"", {1: -8}, b"", bytes(64)])
    out["other-tag"] = cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"", b""]))
    return out


def test_one_input(data: bytes) -> None:
    """One input: decode, read the headers, verify with each key and AAD; only ``CoseError``."""
    try:
        msg = cose.decode_sign1(data)
        msg.to_be_signed()
        assert msg.kid is None or isinstance(msg.kid, bytes)
        alg = msg.alg
    except cose.CoseError:
        return
    assert alg in cose.ALGORITHM_NAMES
    for key in TRUSTED_KEYS:
        for aad in AADS:
            try:
                payload = cose.verify_sign1(data, key.public_key(), external_aad=aad)
            except cose.CoseError:
                continue
            if (msg.protected, payload, aad) not in SIGNED:
                raise Forgery(f"verified without a valid signature: {data[:200]!r}")


if __name__ == "__main__":
    main(test_one_input)
