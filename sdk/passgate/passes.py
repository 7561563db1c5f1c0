"""The PG1 pass: ``PG1:`` + Base45 of a COSE_Sign1 whose payload is a CWT claims map (RFC 8392).

``verify_pass`` is the scan hot path and a security boundary: whatever the input, the only
exception that leaves it is ``PassRefused`` with a stable reason code.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2

from . import base45, cose
from .cose import PrivateKey
from .keys import TrustStore, key_id
from .reasons import Reason
from .wire import MAX_ENTRIES, KeyPurpose

PREFIX = "PG1:"
PASS_ID_SIZE = 16
MAX_TEXT = 4096  # a QR code carries at most 4,296 alphanumeric characters
MAX_INFLATED = 4096

# CWT registered claims (RFC 8392) and passgate's private claims (small negative keys: one byte each,
# because every byte costs QR modules; they are scoped by the PG1 prefix).
CLAIM_ISS, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI = 1, 4, 5, 6, 7
CLAIM_PRODUCT, CLAIM_ZONES, CLAIM_ENTRIES, CLAIM_REENTRY, CLAIM_HOLDER = -1, -2, -3, -4, -5


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

    def __init__(self, pass_id: bytes, kid: bytes, alg: int, valid_from: int, valid_until: int,
                 issued_at: int | None = None, issuer: str | None = None, zones: tuple[str, ...] = (),
                 entries: int | None = None, product: str | None = None, reentry: bool = False,
                 holder_ref: bytes | None = None) -> None:
        # Written out, because every scan builds one: a frozen dataclass's own __init__ sets each
        # field through object.__setattr__ (18,000 instructions for these twelve, 1.7 µs), where
        # one update of the instance's dict takes 7,000. Assignment still raises FrozenInstanceError.
        self.__dict__.update(pass_id=pass_id, kid=kid, alg=alg, valid_from=valid_from,
                             valid_until=valid_until, issued_at=issued_at, issuer=issuer, zones=zones,
                             entries=entries, product=product, reentry=reentry, holder_ref=holder_ref)

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
) -> str:
    """Sign a new pass and return its ``PG1:`` text (tagged COSE_Sign1, uncompressed).

    ``zones`` empty means any zone; ``entries`` None means unlimited; ``pass_id`` defaults to
    16 random bytes. ``holder_ref`` is an optional opaque reference, never a name.
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
    body = cose.sign1(cbor2.dumps(claims), signing_key, kid=key_id(signing_key))
    return PREFIX + base45.encode(body)


def decode_text(text: str | bytes) -> bytes:
    """``PG1:`` text to COSE bytes (inflating a zlib body); raises ``PassRefused(UNREADABLE)``."""
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
    text = text.strip().upper()
    if not text.startswith(PREFIX):
        raise PassRefused(Reason.UNREADABLE, "Not a passgate pass")
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
    then time window with ``skew`` seconds of tolerance for the gate's clock.
    """
    return check_time(verify_signature(text, trust), now=now, skew=skew)


def verify_signature(text: str | bytes, trust: TrustStore) -> Pass:
    """Everything ``verify_pass`` checks except the time window.

    A gate needs this split because its policy checks revocation *before* validity times
    (a revoked pass says "revoked", not "expired").
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
    data = decode_text(text)
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
    # Positional: a frozen dataclass built from keywords costs 1.3 µs more on the scan path.
    return Pass(pass_id, kid or b"", alg, start, end, iat, key_issuer if issuer is None else issuer,
                tuple(zones), entries, product, reentry, holder)
