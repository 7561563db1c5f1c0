"""COSE_Sign1 (RFC 9052) over cbor2, for the two algorithms passgate accepts: EdDSA (Ed25519) and ES256.

Verification is on the scan hot path: the Sig_structure is built with cbor2 and Ed25519 is checked
with PyNaCl (libsodium, about twice as fast as ``cryptography`` here); ES256 goes through
``cryptography``. ``alg`` is only ever read from the *protected* header, so an attacker cannot swap
it in the unprotected one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError

EDDSA = -8
ES256 = -7
ALGORITHM_NAMES = {EDDSA: "EdDSA", ES256: "ES256"}

HEADER_ALG = 1
HEADER_KID = 4
SIGN1_TAG = 18

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
Verify = Callable[[bytes, bytes], None]


class CoseError(Exception):
    """Base of every error this module raises."""


class MalformedError(CoseError):
    """The bytes are not a well-formed COSE_Sign1 structure."""


class UnsupportedAlgorithmError(CoseError):
    """``alg`` is missing from the protected header or is not EdDSA / ES256."""


class SignatureError(CoseError):
    """The signature does not verify with the given key."""


@dataclass(frozen=True)
class Sign1:
    """A parsed, not yet verified, COSE_Sign1 message."""

    protected: bytes
    protected_header: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes

    def __init__(self, protected: bytes, protected_header: Mapping[Any, Any],
                 unprotected: Mapping[Any, Any], payload: bytes, signature: bytes) -> None:
        # Written out, as passes.Pass: one dict update instead of five object.__setattr__ calls.
        self.__dict__.update(protected=protected, protected_header=protected_header, unprotected=unprotected,
                             payload=payload, signature=signature)

    @property
    def alg(self) -> int:
        """The algorithm from the protected header (never from the unprotected one)."""
        alg = self.protected_header.get(HEADER_ALG)
        if type(alg) is not int or alg not in ALGORITHM_NAMES:  # a list or map is unhashable
            where = "missing from the protected header" if alg is None else f"{alg!r}"
            raise UnsupportedAlgorithmError(f"unsupported algorithm: {where}")
        return alg

    @property
    def kid(self) -> bytes | None:
        """The key id, protected header first (RFC 9052 allows either bucket)."""
        kid = self.protected_header.get(HEADER_KID, self.unprotected.get(HEADER_KID))
        return kid if isinstance(kid, bytes) else None

    def to_be_signed(self, external_aad: bytes = b"") -> bytes:
        """The Sig_structure bytes the signature covers: ``["Signature1", protected, external_aad,
        payload]`` in CBOR, the same bytes cbor2 writes, spliced from the byte strings rather than
        encoded again (0.45 µs against cbor2's 1.2 µs on the scan path)."""
        protected, payload = self.protected, self.payload
        return (_SIG1_HEAD + _bstr_head(len(protected)) + protected + _bstr_head(len(external_aad))
                + external_aad + _bstr_head(len(payload)) + payload)


_SIG1_HEAD = b"\x84\x6aSignature1"  # an array of 4 items, then the text string "Signature1"
_SHORT_HEADS = tuple(bytes((0x40 | n,)) if n < 24 else bytes((0x58, n)) for n in range(0x100))


def _bstr_head(length: int) -> bytes:
    """The head of a CBOR byte string of ``length`` bytes, in its shortest form (RFC 8949 4.2.1)."""
    if length < 0x100:
        return _SHORT_HEADS[length]
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    if length < 0x100000000:
        return b"\x5a" + length.to_bytes(4, "big")
    return b"\x5b" + length.to_bytes(8, "big")


def decode_sign1(data: bytes) -> Sign1:
    """Parse tagged (18) or untagged COSE_Sign1 bytes; raises ``MalformedError``."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise MalformedError(f"not CBOR: {exc}") from None
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != SIGN1_TAG:
            raise MalformedError(f"CBOR tag {obj.tag} is not COSE_Sign1 (18)")
        obj = obj.value
    if not isinstance(obj, list | tuple) or len(obj) != 4:
        raise MalformedError("COSE_Sign1 must be an array of 4 items")
    protected, unprotected, payload, signature = obj
    if not isinstance(protected, bytes) or not _is_map(unprotected):
        raise MalformedError("bad COSE_Sign1 header buckets")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise MalformedError("payload and signature must be byte strings")
    header = _protected_header(protected) if protected else {}
    return Sign1(protected, header, unprotected, payload, signature)


def _is_map(value: object) -> bool:
    """``isinstance(value, Mapping)``, the two types cbor2 gives asked first: its frozendict is only
    registered with ``Mapping``, and asking the ABC costs 0.56 µs a scan where this costs 0.15 (one
    isinstance of all three, 0.31)."""
    return isinstance(value, dict | cbor2.frozendict) or isinstance(value, Mapping)  # noqa: SIM101


@functools.lru_cache(maxsize=64)
def _protected_header(protected: bytes) -> Mapping[Any, Any]:
    """The protected bucket decoded, read-only. Every pass of one issuer key carries the same bytes,
    so a gate decodes them once a key rather than once a scan (0.6 µs); errors are not cached."""
    try:
        header = cbor2.loads(protected)
    except Exception as exc:
        raise MalformedError(f"protected header is not CBOR: {exc}") from None
    if not _is_map(header):
        raise MalformedError("protected header is not a map")
    return MappingProxyType(header)


def algorithm_for(key: PublicKey | PrivateKey) -> int:
    """The COSE algorithm a key signs with; raises ``UnsupportedAlgorithmError`` for other keys."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return EDDSA
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return ES256
    raise UnsupportedAlgorithmError(f"unsupported key type {type(key).__name__}")



# One algorithm object for every ES256 and holder verify (building it costs about 2 µs a call).
ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_SHORT = tuple(bytes((n,)) for n in range(128))  # DER short-form lengths (a P-256 signature's are < 128)


def raw_to_der(signature: bytes) -> bytes:
    """A 64-byte raw r || s (COSE's and WebCrypto's form) as the DER ``cryptography`` verifies: two
    positive INTEGERs in a SEQUENCE, spliced by hand (0.5 µs; ``encode_dss_signature`` takes 1.5)."""
    r, s = signature[:32].lstrip(b"\0"), signature[32:].lstrip(b"\0")
    if not r or r[0] & 0x80:
        r = b"\0" + r
    if not s or s[0] & 0x80:
        s = b"\0" + s
    return b"\x30" + _SHORT[len(r) + len(s) + 4] + b"\x02" + _SHORT[len(r)] + r + b"\x02" + _SHORT[len(s)] + s

def make_verifier(public_key: PublicKey) -> Verify:
    """A function ``verify(message, signature)`` for one key that raises ``SignatureError``.

    Built once per trusted key so the hot path does no key parsing.
    """
    algorithm_for(public_key)  # UnsupportedAlgorithmError for any key but Ed25519 and P-256
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)

        def verify_ed25519(message: bytes, signature: bytes) -> None:
            if len(signature) != 64:
                raise SignatureError("Ed25519 signature must be 64 bytes")
            try:
                crypto_sign_open(signature + message, raw)
            except (BadSignatureError, CryptoError):
                raise SignatureError("signature does not verify") from None

        return verify_ed25519
    if not isinstance(public_key, ec.EllipticCurvePublicKey):  # a private key passed by mistake
        raise UnsupportedAlgorithmError(f"{type(public_key).__name__} is not a public key")

    def verify_es256(message: bytes, signature: bytes) -> None:
        if len(signature) != 64:
            raise SignatureError("ES256 signature must be 64 bytes (r || s)")
        try:
            public_key.verify(raw_to_der(signature), message, ECDSA_SHA256)
        except InvalidSignature:
            raise SignatureError("signature does not verify") from None

    return verify_es256


def check_alg(msg: Sign1, public_key: PublicKey) -> None:
    """Refuse a message whose protected ``alg`` is not the one the key signs with."""
    expected = algorithm_for(public_key)
    if msg.alg != expected:
        raise SignatureError(
            f"algorithm {ALGORITHM_NAMES[msg.alg]} does not match the "
            f"{ALGORITHM_NAMES[expected]} key"
        )


def verify_sign1(data: bytes, public_key: PublicKey, *, external_aad: bytes = b"") -> bytes:
    """Verify COSE_Sign1 bytes (tagged or untagged) and return the payload.

    Raises ``MalformedError``, ``UnsupportedAlgorithmError`` or ``SignatureError``.
    """
    msg = decode_sign1(data)
    check_alg(msg, public_key)
    make_verifier(public_key)(msg.to_be_signed(external_aad), msg.signature)
    return msg.payload


def sign1(
    payload: bytes,
    private_key: PrivateKey,
    *,
    kid: bytes | None = None,
    tagged: bool = True,
    external_aad: bytes = b"",
) -> bytes:
    """Sign ``payload`` as COSE_Sign1 with ``alg`` (and ``kid``, if given) in the protected header."""
    alg = algorithm_for(private_key)
    header: dict[int, Any] = {HEADER_ALG: alg}
    if kid is not None:
        header[HEADER_KID] = kid
    protected = cbor2.dumps(header)
    tbs = cbor2.dumps(["Signature1", protected, external_aad, payload])
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        signature = private_key.sign(tbs)
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private_key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:  # a public key passed by mistake
        raise UnsupportedAlgorithmError(f"{type(private_key).__name__} is not a private key")
    body = [protected, {}, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(SIGN1_TAG, body) if tagged else body)
