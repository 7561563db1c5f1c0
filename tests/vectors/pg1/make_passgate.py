"""passgate's own reference vectors (``passgate.json``): passes made with passgate, and variants a
gate meets in the field (lower case from a wedge scanner in Caps Lock, a zlib body, an untagged
COSE_Sign1) or must refuse (a flipped signature bit, another key behind the trusted kid, the alg only in
the unprotected header, a wrong prefix). Made once and committed; the tests never regenerate them:

    .venv/bin/python tests/vectors/pg1/make_passgate.py > tests/vectors/pg1/passgate.json
"""

from __future__ import annotations

import hashlib
import json
import zlib

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from passgate import base45, cose, issue_pass

PREFIX = "PG1:"


def key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def body(text: str) -> bytes:
    return base45.decode(text[len(PREFIX):])


def text(data: bytes) -> str:
    return PREFIX + base45.encode(data)


def main() -> None:
    key1, stranger = key("passgate reference vector key 1"), key("passgate reference vector stranger")
    minimal_args = {"valid_from": 1800000000, "valid_until": 1800003600, "issued_at": 1799999000,
                    "pass_id": bytes([0x5A]) * 16}
    minimal = issue_pass(key1, **minimal_args)
    message = cbor2.loads(body(minimal))
    tag, (protected, unprotected, payload, signature) = message.tag, message.value
    flipped = signature[:-1] + bytes([signature[-1] ^ 1])
    # another key's signature over the same protected header (the trusted kid): a forgery
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    forged = stranger.sign(tbs)
    alg_unprotected = cbor2.dumps({4: cbor2.loads(protected)[4]})
    variants = {
        "passgate-minimal": (minimal, {"args": {**minimal_args, "pass_id": minimal_args["pass_id"].hex()}}),
        "passgate-lower-case": (PREFIX + minimal[len(PREFIX):].lower(), {}),
        "passgate-zlib-body": (text(zlib.compress(body(minimal))), {}),
        "passgate-untagged": (text(cbor2.dumps([protected, unprotected, payload, signature])), {}),
        "passgate-flipped-signature-bit": (text(cbor2.dumps(cbor2.CBORTag(
            tag, [protected, unprotected, payload, flipped]))), {}),
        "passgate-stranger-behind-trusted-kid": (text(cbor2.dumps(cbor2.CBORTag(
            tag, [protected, unprotected, payload, forged]))), {}),
        "passgate-alg-unprotected": (text(cbor2.dumps(cbor2.CBORTag(
            tag, [alg_unprotected, {cose.HEADER_ALG: cose.EDDSA}, payload, signature]))), {}),
        "passgate-wrong-prefix": ("XX1:" + minimal[len(PREFIX):], {}),
    }
    print(json.dumps({
        "made_by": "tests/vectors/pg1/make_passgate.py (passgate 0.1.0, cbor2)",
        "passes": [{"name": name, "text": value, **extra} for name, (value, extra) in variants.items()],
    }, indent=1))


if __name__ == "__main__":
    main()
