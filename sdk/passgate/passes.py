"""The PG1 pass: ``PG1:`` + Base45 of a COSE_Sign1 whose payload is a CWT claims map (RFC 8392).

``verify_pass`` is the scan hot path and a security boundary: whatever the input, the only
exception that leaves it is ``PassRefused`` with a stable reason code. It also takes the ``PG2:``
presentation of a holder-bound pass (``passgate.holder``): a pass whose claims carry its holder's
P-256 public key (``cnf``, RFC 8747), shown with the holder's signature over the current time step.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import base45, cose
from .cose import PrivateKey
from .keys import TrustStore, key_id
from .reasons import Reason
from .wire import MAX_ENTRIES, KeyPurpose

PREFIX = "PG1:"
PRESENTATION_PREFIX = "PG2:"  # a holder-bound pass shown with its holder's signature (passgate.holder)
PASS_ID_SIZE = 16
MAX_TEXT = 4096  # a QR code carries at most 4,296 alphanumeric characters
MAX_INFLATED = 4096

# CWT registered claims (RFC 8392) and passgate's private claims (small negative keys: one byte each,
# because every byte costs QR modules; they are scoped by the PG1 prefix).
CLAIM_ISS, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI = 1, 4, 5, 6, 7
CLAIM_PRODUCT, CLAIM_ZONES, CLAIM_ENTRIES, CLAIM_REENTRY, CLAIM_HOLDER = -1, -2, -3, -4, -5
# Holder binding: ``cnf`` (RFC 8747) = {1: COSE_Key} with the holder's P-256 key, and the time step of
# its presentations in seconds (absent: 15).
CLAIM_CNF, CLAIM_STEP = 8, -6
CNF_COSE_KEY = 1
# COSE_Key labels and values (RFC 9053): kty EC2, crv P-256, the coordinates as 32-byte strings.
COSE_KEY_KTY, COSE_KEY_CRV, COSE_KEY_X, COSE_KEY_Y = 1, -1, -2, -3
KTY_EC2, CRV_P256 = 2, 1
DEFAULT_STEP, MIN_STEP, MAX_STEP = 15, 5, 300
POINT_SIZE = 65  # an uncompressed P-256 point: 0x04 || x || y


class PassRefused(Exception):
    """A pass was refused; ``reason`` is a stable code, ``detail`` the human explanation."""

    def __init__(self, reason: Reason, detail: str | None = None) -> None:
        self.reason = Reason(reason)
        self.detail = detail or self.reason.text
        super().__init__(f"{self.reason}: {self.detail}")


@dataclass(frozen=True)
class Pass:
    """A verified pass: the claims, nothing personal.

    Times are epoch seconds (what the gate compares); ``valid_from_dt`` etc. give UTC datetimes.
    ``holder_key`` is the bound holder's P-256 point (65 bytes, uncompressed) or None for a pass
    anyone may show; ``holder_verified`` says the scan proved the holder (a ``PG2:`` presentation
    made at ``presentation_step``, in steps of ``holder_step`` seconds).
    """

    pass_id: bytes
    kid: bytes
    alg: int
    valid_from: int
    valid_until: int
    issued_at: int | None = None
    issuer: str | None = None
    zones: tuple[str, ...] = ()
    entries: int | None = None
    product: str | None = None
    reentry: bool = False
    holder_ref: bytes | None = None
    holder_key: bytes | None = None
    holder_step: int = DEFAULT_STEP
    holder_verified: bool = False
    presentation_step: int | None = None

    def __init__(self, pass_id: bytes, kid: bytes, alg: int, valid_from: int, valid_until: int,
                 issued_at: int | None = None, issuer: str | None = None, zones: tuple[str, ...] = (),
                 entries: int | None = None, product: str | None = None, reentry: bool = False,
                 holder_ref: bytes | None = None, holder_key: bytes | None = None,
                 holder_step: int = DEFAULT_STEP, holder_verified: bool = False,
                 presentation_step: int | None = None) -> None:
        # Written out, because every scan builds one: a frozen dataclass's own __init__ sets each
        # field through object.__setattr__ (18,000 instructions for twelve, 1.7 µs), where one
        # update of the instance's dict takes 7,000. Assignment still raises FrozenInstanceError.
        self.__dict__.update(pass_id=pass_id, kid=kid, alg=alg, valid_from=valid_from,
                             valid_until=valid_until, issued_at=issued_at, issuer=issuer, zones=zones,
                             entries=entries, product=product, reentry=reentry, holder_ref=holder_ref,
                             holder_key=holder_key, holder_step=holder_step,
                             holder_verified=holder_verified, presentation_step=presentation_step)

    @property
    def pass_id_hex(self) -> str:
        return self.pass_id.hex()

    @property
    def valid_from_dt(self) -> datetime:
        return datetime.fromtimestamp(self.valid_from, UTC)

    @property
    def valid_until_dt(self) -> datetime:
        return datetime.fromtimestamp(self.valid_until, UTC)

    def valid_in_zone(self, zones: Iterable[str]) -> bool:
        """True when the pass names no zone (any zone) or one of ``zones``."""
        if not self.zones:
            return True
        for zone in zones:  # noqa: SIM110 (any() over a generator: 0.5 µs against 0.08, on every scan)
            if zone in self.zones:
                return True
        return False


def _epoch(value: datetime | float | int) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetimes must be timezone-aware (use datetime.now(UTC) or astimezone)")
        return int(value.timestamp())
    return int(value)


def issue_pass(
    signing_key: PrivateKey,
    *,
    valid_from: datetime | float,
    valid_until: datetime | float,
    zones: Iterable[str] = (),
    entries: int | None = None,
    product: str | None = None,
    reentry: bool = False,
    pass_id: bytes | None = None,
    issuer: str | None = None,
    holder_ref: bytes | None = None,
    issued_at: datetime | float | None = None,
    holder_key: ec.EllipticCurvePublicKey | bytes | None = None,
    holder_step: int = DEFAULT_STEP,
) -> str:
    """Sign a new pass and return its ``PG1:`` text (tagged COSE_Sign1, uncompressed).

    ``zones`` empty means any zone; ``entries`` None means unlimited; ``pass_id`` defaults to
    16 random bytes. ``holder_ref`` is an optional opaque reference, never a name.
    ``holder_key`` (a P-256 public key, or its 65-byte uncompressed point) binds the pass to its
    holder: gates then want a ``PG2:`` presentation, made every ``holder_step`` seconds (5 to 300).
    """
    start, end = _epoch(valid_from), _epoch(valid_until)
    if end <= start:
        raise ValueError("valid_until must be after valid_from")
    if pass_id is None:
        pass_id = os.urandom(PASS_ID_SIZE)
    if not isinstance(pass_id, bytes) or len(pass_id) != PASS_ID_SIZE:
        raise ValueError(f"pass_id must be {PASS_ID_SIZE} bytes")
    if entries is not None and (not isinstance(entries, int) or not 1 <= entries <= MAX_ENTRIES):
        raise ValueError(f"entries must be a whole number from 1 to {MAX_ENTRIES}, or None (unlimited)")
    zone_list = [str(z) for z in zones]
    if any(not z for z in zone_list):
        raise ValueError("zone names must not be empty")
    claims: dict[int, Any] = {
        CLAIM_NBF: start,
        CLAIM_EXP: end,
        CLAIM_IAT: _epoch(issued_at) if issued_at is not None else int(time.time()),
        CLAIM_CTI: pass_id,
    }
    if issuer:
        claims[CLAIM_ISS] = issuer
    if zone_list:
        claims[CLAIM_ZONES] = zone_list
    if entries is not None:
        claims[CLAIM_ENTRIES] = entries
    if product:
        claims[CLAIM_PRODUCT] = product
    if reentry:
        claims[CLAIM_REENTRY] = True
    if holder_ref is not None:
        claims[CLAIM_HOLDER] = bytes(holder_ref)
    if holder_key is not None:
        claims[CLAIM_CNF] = {CNF_COSE_KEY: cose_key(holder_key)}
    if type(holder_step) is not int or not MIN_STEP <= holder_step <= MAX_STEP:
        raise ValueError(f"holder_step must be a whole number of seconds from {MIN_STEP} to {MAX_STEP}")
    if holder_step != DEFAULT_STEP:
        if holder_key is None:
            raise ValueError("holder_step needs a holder_key (only a bound pass has presentations)")
        claims[CLAIM_STEP] = holder_step
    body = cose.sign1(cbor2.dumps(claims), signing_key, kid=key_id(signing_key))
    return PREFIX + base45.encode(body)


def cose_key(key: ec.EllipticCurvePublicKey | bytes) -> dict[int, Any]:
    """The COSE_Key map of a holder's P-256 public key (or of its 65-byte uncompressed point)."""
    if isinstance(key, bytes | bytearray):
        point = bytes(key)
        try:
            holder_public_key(point)
        except ValueError:
            raise ValueError("holder_key must be a 65-byte uncompressed P-256 point on the curve") from None
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    else:
        raise TypeError(f"holder_key must be a P-256 public key, not {type(key).__name__}")
    return {COSE_KEY_KTY: KTY_EC2, COSE_KEY_CRV: CRV_P256, COSE_KEY_X: point[1:33], COSE_KEY_Y: point[33:]}


@lru_cache(maxsize=256)
def holder_public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 key of a 65-byte uncompressed point; raises ``ValueError`` for a point off the
    curve. Cached: a presentation parses the claims' key and then verifies with it (8 µs each)."""
    if len(point) != POINT_SIZE or point[0] != 4:
        raise ValueError("not an uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def decode_text(text: str | bytes) -> bytes:
    """``PG1:`` text to COSE bytes (inflating a zlib body); raises ``PassRefused(UNREADABLE)``."""
    text = scanned_text(text)
    if not text.startswith(PREFIX):
        raise PassRefused(Reason.UNREADABLE, "Not a passgate pass")
    return _body(text)


def scanned_text(text: str | bytes) -> str:
    """A scanned code as upper-case text, surrounding whitespace removed; raises
    ``PassRefused(UNREADABLE)`` for binary data and text longer than a QR code holds."""
    if not isinstance(text, str):
        if not isinstance(text, bytes | bytearray | memoryview):
            raise PassRefused(Reason.UNREADABLE, "Not a pass")
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise PassRefused(Reason.UNREADABLE, "Not a pass (binary data)") from None
    if len(text) > MAX_TEXT:
        raise PassRefused(Reason.UNREADABLE, "Not a pass (too long)")
    # Base45 has no lower case, so upper-casing is lossless: it undoes Caps Lock and keyboard-wedge
    # layouts that flip case. Always, because ``isupper`` looks each character up in Unicode's
    # tables (1 µs for a pass) where ``upper`` copies ASCII (0.2 µs).
    return text.strip().upper()


def _body(text: str) -> bytes:
    """The COSE bytes of a ``PG1:`` text as ``scanned_text`` gives it."""
    try:
        data = base45.decode(text[len(PREFIX) :])
    except base45.Base45Error as exc:
        raise PassRefused(Reason.UNREADABLE, f"Damaged code ({exc})") from None
    if data[:1] == b"\x78":
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(data, MAX_INFLATED)
            whole = inflater.eof and not inflater.unconsumed_tail  # not cut short, not a bomb
        except zlib.error:
            whole = False
        if not whole:
            raise PassRefused(Reason.UNREADABLE, "Damaged code (bad compression)")
    return data


def verify_pass(
    text: str | bytes,
    trust: TrustStore,
    *,
    now: float | datetime | None = None,
    skew: float = 60.0,
) -> Pass:
    """Verify a pass offline and return its claims, or raise ``PassRefused``.

    Checks, in order: readable, known key, supported algorithm, signature, key window, claims,
    then time window with ``skew`` seconds of tolerance for the gate's clock. A ``PG2:``
    presentation is checked as its pass, then its holder's signature, and last its time step
    (``passgate.holder.check_presentation_time`` with one step either side).
    """
    p = check_time(verify_signature(text, trust), now=now, skew=skew)
    return p if p.presentation_step is None else holder.check_presentation_time(p, now)


def verify_signature(text: str | bytes, trust: TrustStore) -> Pass:
    """Everything ``verify_pass`` checks except the time window.

    A gate needs this split because its policy checks revocation *before* validity times
    (a revoked pass says "revoked", not "expired"). A presentation's pass comes back with
    ``holder_verified`` True; a holder-bound pass shown as plain ``PG1:`` comes back with it False
    (the gate refuses it, ``holder_proof_required``; an integrator may inspect it).
    """
    try:
        return _verify(text, trust)
    except PassRefused:
        raise
    except Exception as exc:  # the boundary: nothing else may escape, whatever the input
        raise PassRefused(Reason.UNREADABLE, f"Not a valid pass ({type(exc).__name__})") from None


def check_time(p: Pass, *, now: float | datetime | None = None, skew: float = 60.0) -> Pass:
    """Refuse a pass outside its validity window (``skew`` seconds of tolerance); return it."""
    at = _epoch(now) if now is not None else time.time()
    if at + skew < p.valid_from:
        raise PassRefused(Reason.NOT_YET_VALID, f"Valid from {_clock(p.valid_from)}")
    if at - skew >= p.valid_until:
        raise PassRefused(Reason.EXPIRED, f"Expired {_clock(p.valid_until)}")
    return p


def _verify(text: str | bytes, trust: TrustStore) -> Pass:
    text = scanned_text(text)
    if not text.startswith(PREFIX):
        if text.startswith(PRESENTATION_PREFIX):
            return holder.verify_scanned(text, trust)
        raise PassRefused(Reason.UNREADABLE, "Not a passgate pass")
    return verify_cose(_body(text), trust)


def verify_cose(data: bytes, trust: TrustStore) -> Pass:
    """A pass's COSE_Sign1 bytes checked as ``verify_signature`` checks a text (without its boundary:
    the caller's). A presentation carries these bytes."""
    try:
        msg = cose.decode_sign1(data)
    except cose.MalformedError as exc:
        raise PassRefused(Reason.UNREADABLE, f"Damaged code ({exc})") from None
    kid = msg.kid
    if not trust.candidates(kid):
        raise PassRefused(Reason.UNKNOWN_KEY)
    try:
        alg = msg.alg
    except cose.UnsupportedAlgorithmError as exc:
        raise PassRefused(Reason.UNSUPPORTED_ALGORITHM, str(exc)) from None
    key = trust.find_signer(msg)
    if key is None:
        raise PassRefused(Reason.BAD_SIGNATURE)
    if key.purpose is not KeyPurpose.PASSES:
        raise PassRefused(Reason.UNKNOWN_KEY, f"Key {key.kid.hex()} signs {key.role()}, not passes")
    p = _claims(msg.payload, kid, alg, key.issuer or None)
    if key.revoked is not None:  # it leaked: a back-dated iat proves nothing
        raise PassRefused(Reason.KEY_REVOKED)
    if not key.accepts_issue_time(p.issued_at):
        detail = "Issued with a retired key and no issue time" if p.issued_at is None else None
        raise PassRefused(Reason.KEY_RETIRED, detail)
    return p


def _clock(epoch: float) -> str:
    """Local wall-clock time for the guard: the gate's display speaks the venue's time."""
    try:
        return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):  # a signed date outside datetime's years 1-9999
        return f"epoch {epoch}"


def iso_utc(epoch: float) -> str:
    """ISO 8601 UTC text of an epoch for reports; a signed date outside datetime's range (an
    issuer writing milliseconds, say) comes out as the bare number rather than an exception."""
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"epoch {epoch}"


def _bad_claims(detail: str) -> PassRefused:
    return PassRefused(Reason.UNREADABLE, f"Invalid pass contents ({detail})")


def _claims(payload: bytes, kid: bytes | None, alg: int, key_issuer: str | None) -> Pass:
    """The claims as a ``Pass``; ``key_issuer`` names the issuer when the pass does not."""
    try:
        claims = cbor2.loads(payload)
    except Exception:
        raise _bad_claims("not CBOR") from None
    if type(claims) is not dict and not isinstance(claims, Mapping):  # dict first: the ABC is slower
        raise _bad_claims("not a claims map")
    get = claims.get
    pass_id, start, end = get(CLAIM_CTI), get(CLAIM_NBF), get(CLAIM_EXP)
    if not isinstance(pass_id, bytes) or len(pass_id) != PASS_ID_SIZE:
        raise _bad_claims("pass id")
    if type(start) is not int or type(end) is not int:
        raise _bad_claims("validity window")
    iat, issuer, product = get(CLAIM_IAT), get(CLAIM_ISS), get(CLAIM_PRODUCT)
    zones, entries = get(CLAIM_ZONES, ()), get(CLAIM_ENTRIES)
    reentry, holder = get(CLAIM_REENTRY, False), get(CLAIM_HOLDER)
    cnf, step = get(CLAIM_CNF), get(CLAIM_STEP, DEFAULT_STEP)
    if iat is not None and type(iat) is not int:
        raise _bad_claims("issue time")
    if issuer is not None and not isinstance(issuer, str):
        raise _bad_claims("issuer")
    if product is not None and not isinstance(product, str):
        raise _bad_claims("product")
    if not isinstance(zones, list | tuple):
        raise _bad_claims("zones")
    for zone in zones:
        if not isinstance(zone, str):
            raise _bad_claims("zones")
    if entries is not None and (type(entries) is not int or entries < 1):
        raise _bad_claims("entries")
    if type(reentry) is not bool:
        raise _bad_claims("re-entry")
    if holder is not None and not isinstance(holder, bytes):
        raise _bad_claims("holder reference")
    if type(step) is not int or not MIN_STEP <= step <= MAX_STEP:
        raise _bad_claims("presentation time step")
    # Positional: a frozen dataclass built from keywords costs 1.3 µs more on the scan path.
    return Pass(pass_id, kid or b"", alg, start, end, iat, key_issuer if issuer is None else issuer,
                tuple(zones), entries, product, reentry, holder, None if cnf is None else _holder_point(cnf),
                step)


def _holder_point(cnf: object) -> bytes:
    """The 65-byte point of a ``cnf`` claim that is exactly ``{1: COSE_Key}``, the key exactly an EC2
    P-256 one with 32-byte coordinates, and the point on the curve (an off-curve point could leak the
    holder's private key to an attacker choosing it, and no honest phone makes one)."""
    if (type(cnf) is not dict and not isinstance(cnf, Mapping)) or len(cnf) != 1 or CNF_COSE_KEY not in cnf:
        raise _bad_claims("holder key: cnf must be a map of one COSE_Key")
    key = cnf[CNF_COSE_KEY]
    if (type(key) is not dict and not isinstance(key, Mapping)) or len(key) != 4 or not (
            COSE_KEY_KTY in key and COSE_KEY_CRV in key and COSE_KEY_X in key and COSE_KEY_Y in key):
        raise _bad_claims("holder key: a COSE_Key with kty, crv, x and y only")
    kty, crv, x, y = key[COSE_KEY_KTY], key[COSE_KEY_CRV], key[COSE_KEY_X], key[COSE_KEY_Y]
    if type(kty) is not int or kty != KTY_EC2 or type(crv) is not int or crv != CRV_P256:
        raise _bad_claims("holder key: not an EC2 P-256 key")
    if type(x) is not bytes or type(y) is not bytes or len(x) != 32 or len(y) != 32:
        raise _bad_claims("holder key: x and y must be 32-byte strings")
    point = b"\x04" + x + y
    try:
        holder_public_key(point)
    except ValueError:
        raise _bad_claims("holder key: the point is not on the P-256 curve") from None
    return point


# Last: ``holder`` builds on this module (a presentation is a pass and a signature), and this one routes
# ``PG2:`` texts there; a module-level name costs nothing a scan, an import in a function 1 µs.
from . import holder  # noqa: E402
