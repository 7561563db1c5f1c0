"""Holder-bound passes and their ``PG2:`` presentations: a pass a screenshot cannot share.

A bound pass is a PG1 pass whose claims carry its holder's P-256 public key (``cnf``, RFC 8747).
The holder's phone keeps the private half (non-extractable in WebCrypto) and shows, every time
step (15 s unless the pass says otherwise), a presentation:

    ``PG2:`` + Base45( CBOR ``[pass_cose, step, sig]`` )

``pass_cose`` the pass's COSE_Sign1 bytes, ``step`` = floor(unix time / the pass's step), ``sig`` the
holder's ECDSA P-256 / SHA-256 signature, raw r || s (what WebCrypto returns), over
``b"passgate-presentation-v1\\x00" + pass id + step as 8 bytes big-endian``. A gate checks both
signatures offline with public keys alone; a copied code is stale a step later.

Only canonical CBOR is read (what cbor2 and the wallet write): one encoding per presentation, so a
reader cannot be told two texts are different codes when they are the same one. The array is read
by hand, as its three items allow: cbor2's decoder and an encoder's check of it cost more, and
verifying a presentation is on the scan path.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import base45, cose
from .cose import ECDSA_SHA256, raw_to_der
from .keys import TrustStore
from .passes import (
    PRESENTATION_PREFIX,
    Pass,
    PassRefused,
    _claims,
    _epoch,
    decode_text,
    holder_public_key,
    scanned_text,
    verify_cose,
)
from .reasons import Reason

PREFIX = PRESENTATION_PREFIX
CONTEXT = b"passgate-presentation-v1\x00"  # the signed bytes can mean nothing else
SIGNATURE_SIZE = 64
MAX_PRESENTATION_STEP = 2**64 - 1  # signed as 8 bytes
_COORDINATE = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")  # 32 bytes: the last 2 bits are 0


def signed_bytes(pass_id: bytes, step: int) -> bytes:
    """What the holder signs for ``step``: the context, the pass id (16 bytes), the step (8 bytes)."""
    return CONTEXT + pass_id + step.to_bytes(8, "big")


def present(pass_text: str | bytes, holder_private_key: ec.EllipticCurvePrivateKey, *,
            now: float | datetime | None = None) -> str:
    """The ``PG2:`` text a holder shows now (``now`` epoch seconds or an aware datetime): what the
    wallet page draws, in Python for tests and integrators.

    Raises ``ValueError`` when ``pass_text`` is not a readable holder-bound pass or the key is not
    the one the pass is bound to, ``TypeError`` when the key is not a P-256 private key. The pass's
    issuer signature is not checked here (the holder has no trust store): gates check it.
    """
    key = holder_private_key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TypeError(f"the holder's key must be a P-256 private key, not {type(key).__name__}")
    try:
        pass_cose = decode_text(pass_text)
        msg = cose.decode_sign1(pass_cose)
        p = _claims(msg.payload, msg.kid, msg.alg, None)
    except PassRefused as exc:
        raise ValueError(f"not a readable pass: {exc.detail}") from None
    except cose.CoseError as exc:
        raise ValueError(f"not a readable pass: {exc}") from None
    if p.holder_key is None:
        raise ValueError("the pass is not bound to a holder: show it as it is (PG1)")
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    if public != p.holder_key:
        raise ValueError("this key is not the one the pass is bound to")
    at = time.time() if now is None else _epoch(now)
    step = int(at // p.holder_step)
    if not 0 <= step <= MAX_PRESENTATION_STEP:
        raise ValueError(f"no time step for {at}")
    r, s = decode_dss_signature(key.sign(signed_bytes(p.pass_id, step), ECDSA_SHA256))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return PREFIX + base45.encode(cbor2.dumps([pass_cose, step, sig]))


def decode_presentation(text: str | bytes) -> tuple[bytes, int, bytes]:
    """``PG2:`` text (any case, surrounding whitespace) to ``(pass_cose, step, sig)``, nothing
    verified; raises ``PassRefused(UNREADABLE)``."""
    text = scanned_text(text)
    if not text.startswith(PREFIX):
        raise PassRefused(Reason.UNREADABLE, "Not a passgate presentation")
    return _decode(text)


def _decode(text: str) -> tuple[bytes, int, bytes]:
    """The three items of a ``scanned_text`` presentation."""
    try:
        data = base45.decode(text[len(PREFIX) :])
    except base45.Base45Error as exc:
        raise PassRefused(Reason.UNREADABLE, f"Damaged code ({exc})") from None
    if data[:1] != b"\x83":  # an array of 3, definite length
        indefinite = data[:1] == b"\x9f"
        raise _damaged("not canonical CBOR" if indefinite else "not an array of pass, step and signature")
    size, at = _argument(data, 1, _BSTR, "the pass must be a byte string")
    if at + size > len(data):
        raise _damaged("cut short")
    pass_cose, at = data[at : at + size], at + size
    step, at = _argument(data, at, _UINT, "the time step must be an unsigned integer")
    sig = data[at + 2 : at + 2 + SIGNATURE_SIZE]
    if data[at : at + 2] != _SIG_HEAD or len(sig) != SIGNATURE_SIZE:
        raise _damaged(f"the signature must be {SIGNATURE_SIZE} bytes")
    if at + 2 + SIGNATURE_SIZE != len(data):
        raise _damaged("not canonical CBOR")  # trailing bytes
    return pass_cose, step, sig


_BSTR, _UINT = 0x40, 0x00  # CBOR major types 2 and 0, in the initial byte's top 3 bits
_SIG_HEAD = b"\x58\x40"  # a byte string of 64 bytes, its length in one byte
_ARGUMENT_SIZES = {24: 1, 25: 2, 26: 4, 27: 8}  # additional information -> bytes of the argument


def _argument(data: bytes, at: int, major: int, what: str) -> tuple[int, int]:
    """The argument of the data item at ``at`` (its length for a byte string, its value for an
    unsigned integer), which must be of ``major`` type and in its shortest form; and where the item's
    content begins. Raises the refusal naming ``what`` the item should have been."""
    if at >= len(data) or data[at] & 0xE0 != major:
        raise _damaged(what)
    info = data[at] & 0x1F
    if info < 24:
        return info, at + 1
    size = _ARGUMENT_SIZES.get(info)
    if size is None:  # 28-30 are reserved, 31 an indefinite length: no canonical item
        raise _damaged(what if info < 31 or major == _UINT else "not canonical CBOR")
    end = at + 1 + size
    if end > len(data):
        raise _damaged(what)
    value = int.from_bytes(data[at + 1 : end], "big")
    if value < (24 if size == 1 else 1 << (4 * size)):  # fits a shorter form (RFC 8949 4.2.1)
        raise _damaged("not canonical CBOR")
    return value, end


def _damaged(detail: str) -> PassRefused:
    return PassRefused(Reason.UNREADABLE, f"Damaged presentation ({detail})")




def verify_presentation(text: str | bytes, trust: TrustStore) -> Pass:
    """A presentation's pass with ``holder_verified`` True and its ``presentation_step``, after the
    checks ``verify_signature`` makes of a pass and then the holder's signature; the time step is
    not checked (``check_presentation_time``). ``verify_signature`` routes ``PG2:`` texts here and
    is the boundary that lets only ``PassRefused`` out: call that, not this."""
    text = scanned_text(text)
    if not text.startswith(PREFIX):
        raise PassRefused(Reason.UNREADABLE, "Not a passgate presentation")
    return verify_scanned(text, trust)


def verify_scanned(text: str, trust: TrustStore) -> Pass:
    """``verify_presentation`` of a ``PG2:`` text as ``scanned_text`` gives it."""
    pass_cose, step, sig = _decode(text)
    p = verify_cose(pass_cose, trust)
    if p.holder_key is None:
        raise PassRefused(Reason.UNREADABLE, "a presentation of an unbound pass")
    signed = CONTEXT + p.pass_id + step.to_bytes(8, "big")  # signed_bytes, without a call
    try:
        holder_public_key(p.holder_key).verify(raw_to_der(sig), signed, ECDSA_SHA256)
    except InvalidSignature:
        raise PassRefused(Reason.BAD_SIGNATURE, "holder signature") from None
    # ``p`` was built for this call and has not left it: set the two fields in place (as its __init__
    # does) rather than copy all sixteen (1.7 µs; dataclasses.replace 5 µs).
    p.__dict__.update(holder_verified=True, presentation_step=step)
    return p


def check_presentation_time(p: Pass, now: float | datetime | None = None, window_steps: int = 1) -> Pass:
    """Refuse a presentation made outside ``window_steps`` steps either side of the step at ``now``
    (default: this machine's clock), ``presentation_expired``; return the pass. A pass that was not
    shown as a presentation (``presentation_step`` None) has nothing to check here.

    Separate from ``verify_signature`` for the same reason as ``check_time``: a gate checks
    revocation first.
    """
    step = p.presentation_step
    if step is None:
        return p
    at = time.time() if now is None else _epoch(now)
    current = int(at // p.holder_step)
    if step < current - window_steps:
        raise PassRefused(Reason.PRESENTATION_EXPIRED, "old code (a screenshot?)")
    if step > current + window_steps:
        raise PassRefused(Reason.PRESENTATION_EXPIRED, "code from the future: check the phone's clock")
    return p


def public_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """A holder's P-256 public key from the JWK WebCrypto exports (``kty`` EC, ``crv`` P-256, ``x``
    and ``y`` base64url of 32 bytes; other members ignored); ``ValueError`` for anything else,
    including a point off the curve."""
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("the key must be a JWK with kty EC and crv P-256")
    coordinates = []
    for name in ("x", "y"):
        value = jwk.get(name)
        if not isinstance(value, str) or not _COORDINATE.fullmatch(value):
            raise ValueError(f"the JWK's {name} must be 32 bytes in base64url without padding")
        coordinates.append(base64.urlsafe_b64decode(value + "="))
    try:
        return holder_public_key(b"\x04" + coordinates[0] + coordinates[1])
    except ValueError:
        raise ValueError("the JWK's point is not on the P-256 curve") from None
