"""Reference passes and a deny-list snapshot made WITHOUT passgate: pycose builds and signs the
COSE_Sign1, the ``base45`` package from PyPI encodes it, ``struct`` and ``hashlib`` lay out the
deny-list file. passgate's decoder must accept these byte for byte, and its encoder must produce the
same bytes (Ed25519 signatures are deterministic).

Not run by the tests; run it in a throwaway environment to check or remake ``independent.json``:

    python3 -m venv /tmp/indep && /tmp/indep/bin/pip install pycose==1.1.0 base45==0.4.4 cbor2
    /tmp/indep/bin/python tests/vectors/pg1/make_independent.py > tests/vectors/pg1/independent.json

The keys come from fixed seeds (SHA-256 of a label), so anyone can rebuild them; they are test keys.
"""

import hashlib
import json
import struct

import base45
import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycose.algorithms import EdDSA, Es256
from pycose.headers import KID, Algorithm
from pycose.keys.curves import P256, Ed25519
from pycose.keys.ec2 import EC2Key
from pycose.keys.okp import OKPKey
from pycose.messages import Sign1Message


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def kid_of(public_key) -> bytes:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()[:8]


def ed25519_key(label: str):
    private = Ed25519PrivateKey.from_private_bytes(seed(label))
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return OKPKey(crv=Ed25519, d=seed(label), x=raw), kid_of(private.public_key())


def p256_key(label: str):
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's group order
    scalar = int.from_bytes(seed(label), "big") % (order - 1) + 1
    private = ec.derive_private_key(scalar, ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    key = EC2Key(crv=P256, d=scalar.to_bytes(32, "big"), x=numbers.x.to_bytes(32, "big"),
                 y=numbers.y.to_bytes(32, "big"))
    return key, kid_of(private.public_key())


def sign1(key, kid: bytes, alg, payload: bytes, external_aad: bytes = b"") -> bytes:
    msg = Sign1Message(phdr={Algorithm: alg, KID: kid}, payload=payload, external_aad=external_aad)
    msg.key = key
    return msg.encode(tag=True)


def pg1(body: bytes) -> str:
    return "PG1:" + base45.b45encode(body).decode()


def main() -> None:
    key1, kid1 = ed25519_key("passgate reference vector key 1")
    key2, kid2 = p256_key("passgate reference vector key 2")
    vectors = []
    # claims in passgate's order: nbf, exp, iat, cti, iss, zones, entries, product, re-entry, holder ref
    single = {5: 1800000000, 4: 1800014400, 6: 1799990000, 7: bytes(range(16)), -2: ["A"], -3: 1}
    vectors.append({"name": "independent-ed25519-single-entry", "key": "key1-ed25519",
                    "text": pg1(sign1(key1, kid1, EdDSA, cbor2.dumps(single)))})
    full = {5: 1800000000, 4: 1800086400, 6: 1799990000, 7: bytes(range(16, 32)), 1: "Reference Arena",
            -2: ["A", "VIP"], -3: 3, -1: "DAY", -4: True, -5: b"\x01\x02\x03"}
    vectors.append({"name": "independent-ed25519-every-claim", "key": "key1-ed25519",
                    "text": pg1(sign1(key1, kid1, EdDSA, cbor2.dumps(full)))})
    es256 = {5: 1800000000, 4: 1800014400, 6: 1799990000, 7: bytes(range(32, 48))}
    vectors.append({"name": "independent-es256", "key": "key2-es256",
                    "text": pg1(sign1(key2, kid2, Es256, cbor2.dumps(es256)))})
    # a deny-list snapshot: "PGDL", u32 envelope length, envelope, zero padding to 8, entries (u64 LE)
    ids = [bytes(range(16)), bytes([0xAB]) * 16, bytes([0x01]) * 16]
    entries = sorted(int.from_bytes(hashlib.sha256(i).digest()[:8], "little") for i in ids)
    data = b"".join(struct.pack("<Q", e) for e in entries)
    header = {"fmt": 1, "type": "snapshot", "hash": "sha256/8", "kind": "revoked", "scope": "reference",
              "version": 7, "issued_at": 1800000000, "count": len(entries),
              "digest": hashlib.sha256(data).digest()}
    envelope = sign1(key1, kid1, EdDSA, cbor2.dumps(header), external_aad=b"passgate deny list v1")
    head = b"PGDL" + struct.pack("<I", len(envelope)) + envelope
    head += bytes(-len(head) % 8)
    print(json.dumps({
        "made_by": "tests/vectors/pg1/make_independent.py: pycose 1.1.0, base45 0.4.4, cbor2 5.9.0",
        "passes": vectors,
        "denylist": {"name": "independent-revoked-snapshot-v7", "key": "key1-ed25519",
                     "file_hex": (head + data).hex(), "pass_ids_hex": [i.hex() for i in ids],
                     "entry_keys": entries},
    }, indent=1))


if __name__ == "__main__":
    main()
