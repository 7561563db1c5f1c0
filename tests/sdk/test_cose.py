"""COSE_Sign1 conformance against the cose-wg examples (tests/vectors/cose-wg), in passgate's profile.

The profile is stricter than RFC 9052 in one way: ``alg`` must be in the protected header. So
sign-pass-01, whose ``alg`` sits only in the unprotected bucket, is refused here on purpose: it is
exactly the algorithm-confusion shape an attacker would send.
"""

import base64
import json
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from passgate import cose

VECTORS = Path(__file__).parents[1] / "vectors/cose-wg"
CONTENT = b"This is the content."


def _b64(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def load_vector(name: str) -> tuple[bytes, object, bytes]:
    """(COSE bytes, public key, external AAD) of one vector file."""
    data = json.loads(next(VECTORS.glob(f"*/{name}.json")).read_text())
    sign0 = data["input"]["sign0"]
    jwk = sign0["key"]
    if jwk["crv"] == "Ed25519":
        key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(jwk["x_hex"]))
    elif jwk["crv"] == "Ed448":
        key = ed448.Ed448PublicKey.from_public_bytes(bytes.fromhex(jwk["x_hex"]))
    else:
        curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
        numbers = ec.EllipticCurvePublicNumbers(_b64(jwk["x"]), _b64(jwk["y"]), curve[jwk["crv"]])
        key = numbers.public_key()
    aad = bytes.fromhex(sign0.get("external", ""))
    return bytes.fromhex(data["output"]["cbor"]), key, aad


@pytest.mark.parametrize(
    "name", ["eddsa-sig-01", "ecdsa-sig-01", "sign-pass-02", "sign-pass-03"]
)
def test_supported_vectors_verify(name: str) -> None:
    data, key, aad = load_vector(name)
    assert cose.verify_sign1(data, key, external_aad=aad) == CONTENT


def test_external_aad_is_bound_to_the_signature() -> None:
    data, key, _ = load_vector("sign-pass-02")
    with pytest.raises(cose.SignatureError):
        cose.verify_sign1(data, key)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("sign-fail-01", cose.MalformedError),  # wrong CBOR tag
        ("sign-fail-02", cose.SignatureError),  # changed signature
        ("sign-fail-03", cose.UnsupportedAlgorithmError),  # alg -999
        ("sign-fail-04", cose.UnsupportedAlgorithmError),  # alg "unknown"
        ("sign-fail-06", cose.SignatureError),  # protected attribute added
        ("sign-fail-07", cose.SignatureError),  # protected attribute removed
        ("sign-pass-01", cose.UnsupportedAlgorithmError),  # alg only unprotected: our profile
        ("ecdsa-sig-02", cose.UnsupportedAlgorithmError),  # ES384
        ("ecdsa-sig-03", cose.UnsupportedAlgorithmError),  # ES512 on P-521
        ("ecdsa-sig-04", cose.UnsupportedAlgorithmError),  # ES512 on P-256
        ("eddsa-sig-02", cose.UnsupportedAlgorithmError),  # Ed448
    ],
)
def test_failing_and_unsupported_vectors_are_refused(name: str, error: type) -> None:
    data, key, aad = load_vector(name)
    with pytest.raises(error):
        cose.verify_sign1(data, key, external_aad=aad)


@pytest.mark.parametrize("make_key", [ed25519.Ed25519PrivateKey.generate,
                                      lambda: ec.generate_private_key(ec.SECP256R1())])
@pytest.mark.parametrize("tagged", [True, False])
def test_sign1_round_trip(make_key, tagged: bool) -> None:
    key = make_key()
    data = cose.sign1(b"payload", key, kid=b"12345678", tagged=tagged)
    assert data[0] == (0xD2 if tagged else 0x84)
    assert cose.verify_sign1(data, key.public_key()) == b"payload"
    assert cose.decode_sign1(data).kid == b"12345678"
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(cose.SignatureError):
        cose.verify_sign1(data, other)


def test_alg_of_another_key_type_is_refused() -> None:
    """An ES256-labelled message is never checked against an Ed25519 key (and vice versa)."""
    es_key = ec.generate_private_key(ec.SECP256R1())
    data = cose.sign1(b"x", es_key)
    with pytest.raises(cose.SignatureError, match="does not match"):
        cose.verify_sign1(data, ed25519.Ed25519PrivateKey.generate().public_key())


def test_malformed_structures_are_typed_errors() -> None:
    for obj in [1, [], [b"", {}, b""], [1, {}, b"", b""], [b"\xff", {}, b"", b""],
                [cbor2.dumps([1]), {}, b"", b""], [b"", {}, None, b""]]:
        with pytest.raises(cose.MalformedError):
            cose.decode_sign1(cbor2.dumps(obj))
    with pytest.raises(cose.MalformedError):
        cose.decode_sign1(b"\xff\x00")


def test_errors_say_what_is_wrong() -> None:
    ed, es = ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(cose.SignatureError, match=r"^algorithm ES256 does not match the EdDSA key$"):
        cose.verify_sign1(cose.sign1(b"x", es), ed.public_key())
    with pytest.raises(cose.SignatureError, match=r"^algorithm EdDSA does not match the ES256 key$"):
        cose.verify_sign1(cose.sign1(b"x", ed), es.public_key())
    no_alg = cbor2.dumps([b"", {}, b"x", bytes(64)])  # an empty protected header: no alg at all
    msg = cose.decode_sign1(no_alg)
    assert msg.protected_header == {} and msg.kid is None
    missing = "^unsupported algorithm: missing from the protected header$"
    with pytest.raises(cose.UnsupportedAlgorithmError, match=missing):
        _ = msg.alg
    other = cose.decode_sign1(cbor2.dumps([cbor2.dumps({1: -35}), {}, b"x", bytes(64)]))
    with pytest.raises(cose.UnsupportedAlgorithmError, match=r"^unsupported algorithm: -35$"):
        _ = other.alg
    assert cose.ALGORITHM_NAMES == {-8: "EdDSA", -7: "ES256"}


@pytest.mark.parametrize("bucket", [{"protected": {}}, {"unprotected": b""}])
def test_header_buckets_of_the_wrong_type(bucket: dict) -> None:
    parts = {"protected": b"", "unprotected": {}, **bucket}
    with pytest.raises(cose.MalformedError, match=r"^bad COSE_Sign1 header buckets$"):
        cose.decode_sign1(cbor2.dumps([parts["protected"], parts["unprotected"], b"x", bytes(64)]))


def test_a_signature_must_be_exactly_64_bytes() -> None:
    """A genuine ES256 signature re-encoded with a leading zero is the same numbers, but another
    byte string: it must not verify (it would defeat duplicate detection)."""
    es = ec.generate_private_key(ec.SECP256R1())
    protected, unprotected, payload, signature = cbor2.loads(cose.sign1(b"pass", es)).value
    padded = signature[:32] + b"\x00" + signature[32:]
    with pytest.raises(cose.SignatureError, match=r"^ES256 signature must be 64 bytes \(r \|\| s\)$"):
        cose.verify_sign1(cbor2.dumps([protected, unprotected, payload, padded]), es.public_key())
    cose.verify_sign1(cbor2.dumps([protected, unprotected, payload, signature]), es.public_key())
    ed = ed25519.Ed25519PrivateKey.generate()
    protected, unprotected, payload, signature = cbor2.loads(cose.sign1(b"pass", ed)).value
    for bad in (signature + b"\x00", signature[:-1]):
        with pytest.raises(cose.SignatureError, match=r"^Ed25519 signature must be 64 bytes$"):
            cose.verify_sign1(cbor2.dumps([protected, unprotected, payload, bad]), ed.public_key())


def test_only_ed25519_and_p256_keys() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(cose.UnsupportedAlgorithmError, match=r"^unsupported key type"):
        cose.make_verifier(p384.public_key())
    with pytest.raises(cose.UnsupportedAlgorithmError, match=r"^Ed25519PrivateKey is not a public key$"):
        cose.make_verifier(ed25519.Ed25519PrivateKey.generate())  # type: ignore[arg-type]
    with pytest.raises(cose.UnsupportedAlgorithmError, match=r"PrivateKey is not a public key$"):
        cose.make_verifier(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]
    with pytest.raises(cose.UnsupportedAlgorithmError, match=r"is not a private key$"):
        cose.sign1(b"x", ed25519.Ed25519PrivateKey.generate().public_key())  # type: ignore[arg-type]


@given(length=st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536]), aad=st.binary(max_size=300),
       payload=st.binary(max_size=300))
@settings(max_examples=100)
def test_the_spliced_sig_structure_is_what_cbor2_encodes(length: int, aad: bytes, payload: bytes) -> None:
    """``to_be_signed`` splices byte strings instead of encoding: every length class of a CBOR head
    (under 24, one, two and four bytes of length) gives cbor2's own bytes."""
    protected = bytes(range(256)) * (length // 256) + bytes(length % 256)
    msg = cose.Sign1(protected, {}, {}, payload, bytes(64))
    assert msg.to_be_signed(aad) == cbor2.dumps(["Signature1", protected, aad, payload])


def test_the_protected_header_is_read_only_and_shared_only_when_equal() -> None:
    """The decoded protected bucket is kept per byte string (every pass of a key has the same one),
    so it is handed out read-only; a damaged one is refused every time it comes."""
    key = ed25519.Ed25519PrivateKey.generate()
    first, second = (cose.decode_sign1(cose.sign1(payload, key, kid=b"k1")) for payload in (b"a", b"b"))
    assert first.protected_header == {cose.HEADER_ALG: cose.EDDSA, cose.HEADER_KID: b"k1"}
    assert first.protected_header is second.protected_header
    with pytest.raises(TypeError):
        first.protected_header[cose.HEADER_ALG] = cose.ES256  # type: ignore[index]
    other = cose.decode_sign1(cose.sign1(b"a", key, kid=b"k2"))
    assert (other.kid, first.kid) == (b"k2", b"k1")
    for _ in range(2):
        with pytest.raises(cose.MalformedError, match=r"^protected header is not CBOR"):
            cose.decode_sign1(cbor2.dumps([b"\xff", {}, b"x", bytes(64)]))
