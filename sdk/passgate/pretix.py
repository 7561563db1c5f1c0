"""pretix's signed tickets ("pretix_sig1"), read and verified offline like a PG1 pass.

A pretix event that uses the "pretix signature scheme 1" ticket secret generator prints, in each
ticket's QR code, the standard Base64 (with ``=`` padding) of

    01 | payload length (2 bytes, big-endian) | signature length (2 bytes) | payload | signature

with the whole Base64 text reversed (pretix does that so that secrets do not all start alike). The
payload is a protobuf ``Ticket`` message (``pretix_sig1.proto``: seed = 1 string, item = 2,
variation = 3, subevent = 4 int64, optional validFromUnixTime = 5, validUntilUnixTime = 6 int64)
and the signature is Ed25519 over the payload bytes. pretix writes 0 for "no variation", "no
date of a series" and "no time limit". The event's public keys are in its REST resource, under
``valid_keys`` → ``pretix_sig1``: Base64 of PEM, every key listed valid (that is how pretix
rotates keys).

The protobuf decoder here reads this one message strictly (no protobuf package): a signed
payload from pretix is canonical, so anything else is refused with a detail saying what.

``verify_sig1`` is a security boundary like ``passes.verify_pass``: whatever the input, the only
exception that leaves it is ``PassRefused`` with a reason code from ``passgate.reasons``. A ticket's
identity for journals, anti-passback and deny lists is ``pass_id``, 16 bytes derived from the
seed (``seed_pass_id``), never the secret itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError

from .keys import KeyFileError, key_id
from .passes import PREFIX as PG1_PREFIX
from .passes import PassRefused, _clock, _epoch  # one reading of "now" and one clock text for both formats
from .reasons import Reason

__all__ = [
    "MAX_TEXT",
    "EventKeysError",
    "PretixKey",
    "PretixTicket",
    "check_ticket_time",
    "decode_sig1",
    "event_keys_resource",
    "is_sig1",
    "issue_sig1",
    "load_event_keys",
    "seed_pass_id",
    "verify_sig1",
    "verify_sig1_signature",
]

VERSION = 1
HEADER_SIZE = 5
SIGNATURE_SIZE = 64  # Ed25519
PASS_ID_SIZE = 16
MAX_TEXT = 4296  # a QR code carries at most 4,296 characters
MAX_KEYS = 32  # every scan may try every key: a bound on its cost
MAX_EVENT_FILE = 16 * 1024 * 1024
KEY_KIND = "pretix_sig1"
_PASS_ID_LABEL = b"passgate/pretix-sig1-seed\x00"
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
# The shortest ticket: header, a one-character seed (3 bytes), an item (2 bytes), a signature:
# 74 bytes, 100 Base64 characters.
MIN_TEXT = (HEADER_SIZE + 3 + 2 + SIGNATURE_SIZE + 2) // 3 * 4

# Protobuf: field numbers of ``Ticket`` and the wire types (varint, 64-bit, length-delimited,
# start group, end group, 32-bit).
SEED, ITEM, VARIATION, SUBEVENT, VALID_FROM, VALID_UNTIL = 1, 2, 3, 4, 5, 6
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_FIELD_NAMES = {SEED: "seed", ITEM: "item", VARIATION: "variation", SUBEVENT: "subevent",
                VALID_FROM: "validFromUnixTime", VALID_UNTIL: "validUntilUnixTime"}
_MAX_FIELD = (1 << 29) - 1
_INT64_MAX = (1 << 63) - 1


class EventKeysError(KeyFileError, ValueError):
    """An event resource's ``valid_keys`` could not be used; the message names the file and the key."""


class _Unreadable(Exception):
    """A structural problem; becomes ``PassRefused(UNREADABLE)`` with this detail."""


@dataclass(frozen=True)
class PretixKey:
    """One of an event's ``pretix_sig1`` public keys: the raw Ed25519 key and a short fingerprint
    (passgate's kid of the key, in hex) that logs and reports can name it by."""

    raw: bytes
    fingerprint: str

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")

    @classmethod
    def from_public_key(cls, key: ed25519.Ed25519PublicKey) -> PretixKey:
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise TypeError(f"pretix_sig1 keys are Ed25519, not {type(key).__name__}")
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(raw, key_id(key).hex())

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return ed25519.Ed25519PublicKey.from_public_bytes(self.raw)

    def verifies(self, payload: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's over ``payload`` (libsodium, as ``cose`` does)."""
        try:
            crypto_sign_open(signature + payload, self.raw)
        except (BadSignatureError, CryptoError):
            return False
        return True


@dataclass(frozen=True)
class PretixTicket:
    """A decoded pretix_sig1 ticket. ``variation`` and ``subevent`` are None where pretix wrote 0;
    times are epoch seconds or None (no limit). ``key`` is the fingerprint of the key that
    verified it (None from ``decode_sig1``, which checks no signature)."""

    seed: str
    item: int
    variation: int | None
    subevent: int | None
    valid_from: int | None
    valid_until: int | None
    pass_id: bytes
    key: str | None = None

    @property
    def pass_id_hex(self) -> str:
        return self.pass_id.hex()

    @property
    def valid_from_dt(self) -> datetime | None:
        return None if self.valid_from is None else datetime.fromtimestamp(self.valid_from, UTC)

    @property
    def valid_until_dt(self) -> datetime | None:
        return None if self.valid_until is None else datetime.fromtimestamp(self.valid_until, UTC)


def seed_pass_id(seed: str) -> bytes:
    """The 16-byte pass id of a ticket: what the gate's journal, anti-passback and deny lists key on.

    Derived from the seed, which pretix draws anew for every secret it signs, under a label of its
    own so it can never equal an id derived some other way.
    """
    return hashlib.sha256(_PASS_ID_LABEL + seed.encode("utf-8")).digest()[:PASS_ID_SIZE]


# --- event keys --------------------------------------------------------------------------------


def load_event_keys(event: Mapping[str, Any] | str | os.PathLike[str]) -> tuple[PretixKey, ...]:
    """The ``pretix_sig1`` keys of an event resource (a dict as pretix's REST API returns it for
    ``GET /api/v1/organizers/O/events/E/``, or the path of a JSON file holding it).

    Raises ``EventKeysError`` naming the problem: no ``valid_keys``, an empty list, a key that is
    not Base64, not PEM or not Ed25519.
    """
    where = ""
    if not isinstance(event, Mapping):
        path = Path(event)
        where = f"{path}: "
        event = _read_event_file(path)
    valid_keys = event.get("valid_keys")
    if valid_keys is None:
        raise EventKeysError(f"{where}the event has no valid_keys (is it pretix's event resource?)")
    if not isinstance(valid_keys, Mapping):
        raise EventKeysError(f"{where}valid_keys is not an object")
    encoded = valid_keys.get(KEY_KIND)
    if encoded is None:
        raise EventKeysError(f"{where}valid_keys has no {KEY_KIND} list")
    if not isinstance(encoded, list):
        raise EventKeysError(f"{where}valid_keys.{KEY_KIND} is not a list")
    if not encoded:
        raise EventKeysError(f"{where}valid_keys.{KEY_KIND} is empty (does the event sign its tickets?)")
    if len(encoded) > MAX_KEYS:
        raise EventKeysError(f"{where}valid_keys.{KEY_KIND} lists {len(encoded)} keys, at most {MAX_KEYS}")
    keys: list[PretixKey] = []
    for index, item in enumerate(encoded):
        key = _event_key(item, f"{where}valid_keys.{KEY_KIND}[{index}]")
        if key not in keys:
            keys.append(key)
    return tuple(keys)


class JsonFileError(ValueError):
    """A file of an event that cannot be read as JSON; the message says why, without the path."""


def read_json_file(path: Path, what: str) -> Any:
    """A pretix file (the event, its check-in lists), bounded to ``MAX_EVENT_FILE`` bytes: those are
    kilobytes, and a bigger file is a mistake. ``JsonFileError`` names ``what`` could not be read."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_EVENT_FILE + 1)
    except OSError as exc:
        raise JsonFileError(f"cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > MAX_EVENT_FILE:
        raise JsonFileError(f"over {MAX_EVENT_FILE // (1024 * 1024)} MiB, too large for the {what}")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise JsonFileError(f"not JSON ({exc})") from None


def _read_event_file(path: Path) -> Mapping[str, Any]:
    try:
        event = read_json_file(path, "event file")
    except JsonFileError as exc:
        raise EventKeysError(f"{path}: {exc}") from None
    if not isinstance(event, dict):
        raise EventKeysError(f"{path}: not a JSON object (an event resource is one)")
    return event


def _event_key(item: object, where: str) -> PretixKey:
    if not isinstance(item, str):
        raise EventKeysError(f"{where} is not a string")
    try:
        pem = base64.b64decode(item.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise EventKeysError(f"{where} is not base64") from None
    if b"-----BEGIN PUBLIC KEY-----" not in pem:
        raise EventKeysError(f"{where} is not a PEM public key")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise EventKeysError(f"{where} is not a readable PEM public key ({exc})") from None
    except Exception as exc:  # cryptography's UnsupportedAlgorithm for a key it does not know
        raise EventKeysError(f"{where} is not a usable public key ({type(exc).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise EventKeysError(f"{where} is a {type(key).__name__}, not an Ed25519 key")
    return PretixKey.from_public_key(key)


def event_keys_resource(
    public_keys: Iterable[ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey],
) -> dict[str, Any]:
    """A minimal event resource holding ``public_keys`` the way pretix's API shows them
    (``{"valid_keys": {"pretix_sig1": [Base64 of PEM, ...]}}``); a private key gives its public half."""
    encoded = []
    for key in public_keys:
        public = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
        if not isinstance(public, ed25519.Ed25519PublicKey):
            raise TypeError(f"pretix_sig1 keys are Ed25519, not {type(public).__name__}")
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        encoded.append(base64.b64encode(pem).decode("ascii"))
    return {"valid_keys": {KEY_KIND: encoded}}


# --- reading and verifying a secret -------------------------------------------------------------


def is_sig1(text: str | bytes) -> bool:
    """A cheap test for routing a scan: True when ``text`` (surrounding whitespace ignored) could be
    a pretix_sig1 secret: Base64 characters only, long enough, whole groups of four, and version 1
    in the first byte after un-reversing. A PG1 text (``PG1:``; a colon is no Base64) is never one.
    """
    try:
        if not isinstance(text, str):
            text = bytes(text).decode("ascii")
        text = text.strip()
        if not MIN_TEXT <= len(text) <= MAX_TEXT or len(text) % 4:
            return False
        data = text.encode("ascii")
        if not _BASE64.issuperset(data):
            return False
        return base64.b64decode(data[:-5:-1])[:1] == b"\x01"  # the last four characters, reversed
    except Exception:
        return False


def decode_sig1(secret: str | bytes) -> PretixTicket:
    """The ticket in a secret, checking its structure only, NOT its signature: for tools, and for
    turning revoked secrets into pass ids. Raises ``PassRefused(UNREADABLE)`` and nothing else."""
    with _boundary():
        payload, _ = _frame(secret)
        return _ticket(payload, None)


@contextmanager
def _boundary() -> Iterator[None]:
    """The security boundary of ``decode_sig1`` and ``verify_sig1_signature``: whatever the input,
    only ``PassRefused`` leaves."""
    try:
        yield
    except _Unreadable as exc:
        raise PassRefused(Reason.UNREADABLE, str(exc)) from None
    except PassRefused:
        raise
    except Exception as exc:  # nothing else may escape, whatever the input
        raise PassRefused(Reason.UNREADABLE, f"Not a valid pretix ticket ({type(exc).__name__})") from None


def verify_sig1(
    secret: str | bytes,
    keys: Iterable[PretixKey],
    *,
    now: float | datetime | None = None,
    skew: float = 60.0,
) -> PretixTicket:
    """Verify a pretix_sig1 secret offline against the event's keys and return its ticket, or raise
    ``PassRefused``: ``unreadable``, ``unknown_key`` (no keys), ``bad_signature`` (no key verifies),
    ``not_yet_valid`` or ``expired`` (``skew`` seconds of tolerance for the gate's clock)."""
    return check_ticket_time(verify_sig1_signature(secret, keys), now=now, skew=skew)


def verify_sig1_signature(secret: str | bytes, keys: Iterable[PretixKey]) -> PretixTicket:
    """Everything ``verify_sig1`` checks except the time window: a gate checks revocation before
    validity times (a revoked ticket says "revoked", not "expired"), as with ``verify_signature``.

    ``keys`` that are not ``PretixKey``s are a programming error: ``TypeError``, not a refusal."""
    candidates = tuple(keys)
    for key in candidates:
        if not isinstance(key, PretixKey):
            raise TypeError(f"keys must be PretixKey (see load_event_keys), not {type(key).__name__}")
    with _boundary():
        return _verify(secret, candidates)


def check_ticket_time(
    ticket: PretixTicket, *, now: float | datetime | None = None, skew: float = 60.0
) -> PretixTicket:
    """Refuse a ticket outside its validity times (``skew`` seconds of tolerance); return it.

    As pretix's own scanners do, a ticket is valid from ``valid_from`` up to and including
    ``valid_until``; a missing time is no limit on that side.
    """
    at = _epoch(now) if now is not None else time.time()
    if ticket.valid_from is not None and at + skew < ticket.valid_from:
        raise PassRefused(Reason.NOT_YET_VALID, f"Valid from {_clock(ticket.valid_from)}")
    if ticket.valid_until is not None and at - skew > ticket.valid_until:
        raise PassRefused(Reason.EXPIRED, f"Expired {_clock(ticket.valid_until)}")
    return ticket


def _verify(secret: str | bytes, candidates: tuple[PretixKey, ...]) -> PretixTicket:
    payload, signature = _frame(secret)
    if not candidates:
        raise PassRefused(Reason.UNKNOWN_KEY, "No pretix_sig1 key configured for this event")
    for key in candidates:
        if key.verifies(payload, signature):
            return _ticket(payload, key.fingerprint)
    raise PassRefused(Reason.BAD_SIGNATURE, f"Signed by none of the event's {len(candidates)} "
                                            f"key{'s' if len(candidates) != 1 else ''}")


def _frame(secret: str | bytes) -> tuple[bytes, bytes]:
    """(payload, signature) of a secret; raises ``_Unreadable`` (or ``PassRefused``) on any flaw."""
    if not isinstance(secret, str):
        if not isinstance(secret, bytes | bytearray | memoryview):
            raise PassRefused(Reason.UNREADABLE, "Not a pretix ticket")
        try:
            secret = bytes(secret).decode("ascii")
        except UnicodeDecodeError:
            raise PassRefused(Reason.UNREADABLE, "Not a pretix ticket (binary data)") from None
    if len(secret) > MAX_TEXT:
        raise PassRefused(Reason.UNREADABLE, "Not a pretix ticket (too long)")
    text = secret.strip()  # a scanner may add a newline
    if text.startswith(PG1_PREFIX):
        raise PassRefused(Reason.UNREADABLE, "Not a pretix ticket (a passgate PG1 pass)")
    if not text:
        raise PassRefused(Reason.UNREADABLE, "Not a pretix ticket (empty)")
    try:
        reversed_text = text[::-1].encode("ascii")
        data = base64.b64decode(reversed_text, validate=True)
    except (binascii.Error, ValueError):
        raise PassRefused(Reason.UNREADABLE, "Not a pretix ticket (not base64)") from None
    if base64.b64encode(data) != reversed_text:
        # Spare bits set, or padding inside: another text for the same bytes. One ticket, one text.
        raise _Unreadable("Damaged pretix ticket (base64 not in its standard form)")
    if data[0] != VERSION:
        raise _Unreadable(f"Damaged pretix ticket (version {data[0]}, expected {VERSION})")
    if len(data) < HEADER_SIZE:
        raise _Unreadable(f"Damaged pretix ticket ({len(data)} bytes, shorter than its header)")
    payload_size = int.from_bytes(data[1:3], "big")
    signature_size = int.from_bytes(data[3:5], "big")
    body = len(data) - HEADER_SIZE
    if payload_size + signature_size != body:
        raise _Unreadable(
            f"Damaged pretix ticket (header declares {payload_size} + {signature_size} bytes, "
            f"{body} follow)")
    if signature_size != SIGNATURE_SIZE:
        raise _Unreadable(
            f"Damaged pretix ticket (signature of {signature_size} bytes, Ed25519 has {SIGNATURE_SIZE})")
    end = HEADER_SIZE + payload_size
    return data[HEADER_SIZE:end], data[end:]


# --- the protobuf Ticket -----------------------------------------------------------------------


def _damaged(detail: str) -> _Unreadable:
    return _Unreadable(f"Damaged pretix ticket ({detail})")


def _varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """An unsigned varint at ``pos``: (value, next position). At most 10 bytes and 64 bits, in its
    shortest form (a protobuf writer never pads one, and a signed payload is what pretix wrote)."""
    value = shift = 0
    start = pos
    while True:
        if pos >= len(data):
            raise _damaged(f"{what}: truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if pos - start == 10:
            raise _damaged(f"{what}: varint longer than 10 bytes")
    if pos - start == 10 and byte > 1:
        raise _damaged(f"{what}: varint beyond 64 bits")
    if pos - start > 1 and byte == 0:
        raise _damaged(f"{what}: varint not in its shortest form")
    return value, pos


def _int64(value: int) -> int:
    return value - (1 << 64) if value > _INT64_MAX else value


def _ticket(payload: bytes, key: str | None) -> PretixTicket:
    """The ``Ticket`` message: known fields with their own wire type, each at most once; unknown
    fields skipped by wire type as protobuf does (groups, absent from proto3, refused)."""
    values: dict[int, Any] = {}
    pos, end = 0, len(payload)
    while pos < end:
        tag, pos = _varint(payload, pos, "field tag")
        field, wire = tag >> 3, tag & 7
        if not 1 <= field <= _MAX_FIELD:
            raise _damaged(f"field number {field} out of range")
        name = _FIELD_NAMES.get(field, f"field {field}")
        if field in _FIELD_NAMES:
            expected = LEN if field == SEED else VARINT
            if wire != expected:
                raise _damaged(f"{name} has wire type {wire}, expected {expected}")
            if field in values:
                raise _damaged(f"{name} appears twice")
        value: int | bytes | None
        if wire == VARINT:
            value, pos = _varint(payload, pos, name)
        elif wire == LEN:
            size, pos = _varint(payload, pos, f"{name} length")
            if size > end - pos:
                raise _damaged(f"{name} of {size} bytes runs past the payload's end")
            value, pos = payload[pos : pos + size], pos + size
        elif wire in (I64, I32):
            size = 8 if wire == I64 else 4
            if size > end - pos:
                raise _damaged(f"{name} of {size} bytes runs past the payload's end")
            value, pos = None, pos + size
        elif wire in (SGROUP, EGROUP):
            raise _damaged(f"{name} is a group, which proto3 does not have")
        else:
            raise _damaged(f"{name} has wire type {wire}, which protobuf does not define")
        if field in _FIELD_NAMES:
            values[field] = value
    return _ticket_from(values, key)


def _ticket_from(values: dict[int, Any], key: str | None) -> PretixTicket:
    try:
        seed = bytes(values.get(SEED, b"")).decode("utf-8")
    except UnicodeDecodeError:
        raise _damaged("seed is not UTF-8") from None
    if not seed:
        raise _damaged("no seed")
    item = _int64(values.get(ITEM, 0))
    if item < 1:
        raise _damaged("no product (item 0)" if item == 0 else f"item {item} is negative")
    ids = []
    for field in (VARIATION, SUBEVENT, VALID_FROM, VALID_UNTIL):
        value = _int64(values.get(field, 0))
        if value < 0:
            raise _damaged(f"{_FIELD_NAMES[field]} {value} is negative")
        ids.append(value or None)  # pretix writes 0 for none
    variation, subevent, valid_from, valid_until = ids
    return PretixTicket(seed, item, variation, subevent, valid_from, valid_until, seed_pass_id(seed), key)


# --- issuing (tests and interoperability checks) -------------------------------------------------


def issue_sig1(
    private_key: ed25519.Ed25519PrivateKey,
    *,
    seed: str,
    item: int,
    variation: int | None = None,
    subevent: int | None = None,
    valid_from: datetime | float | None = None,
    valid_until: datetime | float | None = None,
) -> str:
    """Sign a pretix_sig1 secret the way pretix does (fields 5 and 6 always written, 0 for no limit).

    For tests and interoperability checks only: pretix issues the real tickets, and the gate
    accepts those of the keys in the event's ``valid_keys``.
    """
    if not isinstance(private_key, ed25519.Ed25519PrivateKey):
        raise TypeError(f"pretix_sig1 signs with an Ed25519 private key, not {type(private_key).__name__}")
    if not isinstance(seed, str) or not seed:
        raise ValueError("seed must be a non-empty string")
    fields: list[tuple[int, int]] = [(ITEM, _id("item", item))]
    for field, name, value in ((VARIATION, "variation", variation), (SUBEVENT, "subevent", subevent)):
        if value is not None:
            fields.append((field, _id(name, value)))
    times = []
    for name, moment in (("valid_from", valid_from), ("valid_until", valid_until)):
        at = 0 if moment is None else _epoch(moment)
        if not 0 <= at <= _INT64_MAX or (moment is not None and at == 0):
            raise ValueError(f"{name} must be after 1970 and fit 64 bits (or None for no limit)")
        times.append(at)
    if times[0] and times[1] and times[1] < times[0]:
        raise ValueError("valid_until must not be before valid_from")
    seed_bytes = seed.encode("utf-8")
    payload = _tag(SEED, LEN) + _put_varint(len(seed_bytes)) + seed_bytes
    for field, value in fields:
        payload += _tag(field, VARINT) + _put_varint(value)
    payload += _tag(VALID_FROM, VARINT) + _put_varint(times[0])
    payload += _tag(VALID_UNTIL, VARINT) + _put_varint(times[1])
    if len(payload) > 0xFFFF:
        raise ValueError("the seed is too long for a ticket")
    signature = private_key.sign(payload)
    data = (bytes([VERSION]) + len(payload).to_bytes(2, "big") + len(signature).to_bytes(2, "big")
            + payload + signature)
    return base64.b64encode(data).decode("ascii")[::-1]


def _id(name: str, value: int) -> int:
    if type(value) is not int or not 1 <= value <= _INT64_MAX:
        raise ValueError(f"{name} must be a positive whole number (pretix's id), not {value!r}")
    return value


def _tag(field: int, wire: int) -> bytes:
    return _put_varint(field << 3 | wire)


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
