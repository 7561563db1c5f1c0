"""Fixed reference vectors for passgate's own formats (tests/vectors/pg1/): passes and a deny-list
snapshot made by an independent implementation (pycose and PyPI's base45, see make_independent.py) and
by passgate itself (make_passgate.py), with their keys (from fixed seeds) and the expected results. The
decoder must accept them byte for byte, the encoder must produce the same bytes, and a gate must
decide them as written here: a change to a claim number or a header on both sides at once fails."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from passgate import PassRefused, Reason, TrustStore, cose, issue_pass, key_id, verify_pass
from passgate.denylist import DenyList, entry_key, read_signed, sign_snapshot

VECTORS = Path(__file__).parents[1] / "vectors" / "pg1"
INDEPENDENT = json.loads((VECTORS / "independent.json").read_text())
OURS = json.loads((VECTORS / "passgate.json").read_text())
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
NOW = 1800000100


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


KEY1 = Ed25519PrivateKey.from_private_bytes(seed("passgate reference vector key 1"))
KEY2 = ec.derive_private_key(
    int.from_bytes(seed("passgate reference vector key 2"), "big") % (P256_ORDER - 1) + 1, ec.SECP256R1())
KEYS = {"key1-ed25519": KEY1, "key2-es256": KEY2}


def trust() -> TrustStore:
    store = TrustStore()
    store.add(KEY1.public_key(), issuer="Reference issuer")
    store.add(KEY2.public_key())
    return store


def text_of(name: str) -> str:
    for vector in [*INDEPENDENT["passes"], *OURS["passes"]]:
        if vector["name"] == name:
            return str(vector["text"])
    raise KeyError(name)


def test_the_keys_are_the_ones_the_vectors_name() -> None:
    assert key_id(KEY1).hex() == "0284253584d92c42"
    assert key_id(KEY2).hex() == key_id(KEY2.public_key()).hex() and len(key_id(KEY2)) == 8


EXPECTED: dict[str, dict[str, Any]] = {
    "independent-ed25519-single-entry": {
        "pass_id": bytes(range(16)), "kid": bytes.fromhex("0284253584d92c42"), "alg": cose.EDDSA,
        "valid_from": 1800000000, "valid_until": 1800014400, "issued_at": 1799990000,
        "issuer": "Reference issuer", "zones": ("A",), "entries": 1, "product": None, "reentry": False,
        "holder_ref": None,
    },
    "independent-ed25519-every-claim": {
        "pass_id": bytes(range(16, 32)), "kid": bytes.fromhex("0284253584d92c42"), "alg": cose.EDDSA,
        "valid_from": 1800000000, "valid_until": 1800086400, "issued_at": 1799990000,
        "issuer": "Reference Arena", "zones": ("A", "VIP"), "entries": 3, "product": "DAY", "reentry": True,
        "holder_ref": b"\x01\x02\x03",
    },
    "independent-es256": {
        "pass_id": bytes(range(32, 48)), "kid": key_id(KEY2), "alg": cose.ES256,
        "valid_from": 1800000000, "valid_until": 1800014400, "issued_at": 1799990000,
        "issuer": None, "zones": (), "entries": None, "product": None, "reentry": False, "holder_ref": None,
    },
    "passgate-minimal": {
        "pass_id": bytes([0x5A]) * 16, "kid": bytes.fromhex("0284253584d92c42"), "alg": cose.EDDSA,
        "valid_from": 1800000000, "valid_until": 1800003600, "issued_at": 1799999000,
        "issuer": "Reference issuer", "zones": (), "entries": None, "product": None, "reentry": False,
        "holder_ref": None,
    },
}
# the same pass as passgate-minimal, as a gate may receive it
ACCEPTED_VARIANTS = ("passgate-lower-case", "passgate-zlib-body", "passgate-untagged")
REFUSED = {
    "passgate-flipped-signature-bit": Reason.BAD_SIGNATURE,
    "passgate-stranger-behind-trusted-kid": Reason.BAD_SIGNATURE,
    "passgate-alg-unprotected": Reason.UNSUPPORTED_ALGORITHM,
    "passgate-wrong-prefix": Reason.UNREADABLE,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_decoder_reads_every_claim(name: str) -> None:
    p = verify_pass(text_of(name), trust(), now=NOW)
    got = {field: getattr(p, field) for field in EXPECTED[name]}
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", ACCEPTED_VARIANTS)
def test_variants_a_gate_meets_in_the_field(name: str) -> None:
    assert verify_pass(text_of(name), trust(), now=NOW) == verify_pass(text_of("passgate-minimal"), trust(),
                                                                      now=NOW)


@pytest.mark.parametrize(("name", "reason"), sorted(REFUSED.items()))
def test_refused_vectors(name: str, reason: Reason) -> None:
    with pytest.raises(PassRefused) as info:
        verify_pass(text_of(name), trust(), now=NOW)
    assert info.value.reason is reason


def test_the_encoder_makes_the_independent_bytes() -> None:
    """pycose and base45 from PyPI made these; passgate's encoder makes the very same text."""
    single = issue_pass(KEY1, valid_from=1800000000, valid_until=1800014400, issued_at=1799990000,
                        pass_id=bytes(range(16)), zones=["A"], entries=1)
    assert single == text_of("independent-ed25519-single-entry")
    every = issue_pass(KEY1, valid_from=1800000000, valid_until=1800086400, issued_at=1799990000,
                       pass_id=bytes(range(16, 32)), issuer="Reference Arena", zones=["A", "VIP"], entries=3,
                       product="DAY", reentry=True, holder_ref=b"\x01\x02\x03")
    assert every == text_of("independent-ed25519-every-claim")
    minimal = issue_pass(KEY1, valid_from=1800000000, valid_until=1800003600, issued_at=1799999000,
                         pass_id=bytes([0x5A]) * 16)
    assert minimal == text_of("passgate-minimal") and len(minimal) == 187


def test_a_gate_decides_the_vectors() -> None:
    from passgated.policy import Context, Direction, PolicyConfig, Usage, decide

    class Used:
        def __init__(self, entries: int) -> None:
            self.entries = entries

        def usage(self, pass_id: bytes) -> Usage:
            return Usage(entries_used=self.entries, inside=bool(self.entries), last_entry_t=NOW - 60)

    def gate(name: str, *, zones: tuple[str, ...] = ("A",), now: float = NOW, used: int = 0) -> str:
        try:
            result: Any = verify_pass(text_of(name), trust(), now=now)
        except PassRefused as refused:
            result = refused
        ctx = Context(now=now, direction=Direction.ENTRY, revoked=set(), blocked=set(), usage=Used(used))
        return str(decide(result, ctx, PolicyConfig(zones=zones)).reason)

    single = "independent-ed25519-single-entry"
    assert gate(single) == "admit"
    assert gate(single, zones=("VIP",)) == "wrong_zone"
    assert gate(single, used=1) == "used_up"
    assert gate(single, now=1800000000 - 61) == "not_yet_valid"
    assert gate(single, now=1800014400 + 60) == "expired"
    assert gate("independent-ed25519-every-claim", zones=("VIP", "B")) == "admit"
    assert gate("independent-ed25519-every-claim", used=2) == "already_inside"
    assert gate("independent-es256", zones=("anything",)) == "admit"
    assert gate("passgate-wrong-prefix") == "unreadable"


def test_the_independent_deny_list_snapshot() -> None:
    vector = INDEPENDENT["denylist"]
    data = bytes.fromhex(vector["file_hex"])
    ids = [bytes.fromhex(h) for h in vector["pass_ids_hex"]]
    assert sorted(entry_key(i) for i in ids) == vector["entry_keys"]  # SHA-256, first 8 bytes, little-endian
    lists = trust()
    lists.add(KEY1.public_key(), purpose="denylist", scope="reference")  # the vector's list key
    snapshot = read_signed(data, lists)
    assert isinstance(snapshot, DenyList)
    assert (snapshot.kind, snapshot.scope, snapshot.version, snapshot.issued_at, len(snapshot)) == (
        "revoked", "reference", 7, 1800000000, 3)
    assert snapshot.signer == key_id(KEY1) and all(i in snapshot for i in ids) and bytes(16) not in snapshot
    mine = sign_snapshot(KEY1, ids, kind="revoked", scope="reference", version=7, issued_at=1800000000)
    assert mine == data  # passgate's encoder makes the same bytes
