"""Deny lists: signed revocation and block lists, compact on the gate, updated by signed deltas.

A list holds, per issuer ``scope``, the pass ids (``cti``) a gate must refuse: ``revoked``
(permanent, deltas may only add) or ``blocked`` (reversible, deltas may add and remove). An entry is
the first 8 bytes of SHA-256(pass id) read as a little-endian uint64, so the gate never stores the
ids themselves. Lookups are exact for listed ids; an unlisted id collides with some entry with
probability at most ``n / 2**64`` per lookup (5.4e-13 for 10 million entries).

In memory: one sorted ``uint64`` numpy array (8 bytes per entry) plus a bucket index on the top bits
(4 bytes per ~10 entries); a lookup hashes the id, reads two index slots and bisects a ~10-entry
bucket through a ``memoryview``, which measured faster than ``numpy.searchsorted`` on scalars and
than ``bytes.find``. A ``DenyList`` is immutable: ``apply`` builds a new one beside it, so a reader
that took one reference sees the old list or the new one, never a mix; ``LiveDenyList`` is the
holder a gate swaps atomically.

File format (all integers little-endian)::

    "PGDL"  u32 envelope length  envelope  zero padding to 8 bytes  data  [u32 crc32 — local only]

- *Network files* (``snapshot``, ``delta``; served from any static HTTP server or file share): the
  envelope is a tagged COSE_Sign1 (``passgate.cose``) whose payload is a CBOR header map carrying the
  SHA-256 ``digest`` of the data section, signed with ``external_aad = AAD`` so a deny-list
  signature can never pass for a pass signature or the reverse. The array stays outside the signed
  payload so a 10 M entry snapshot is verified with one streaming SHA-256 and never copied through
  cbor2 or libsodium (80 MB instead of ~240 MB peak). Always verified against a ``TrustStore``.
- *Local files* (``DenyList.save`` / ``load``; the gate's own copy): the envelope is the plain
  CBOR header map and a CRC-32 of everything before it ends the file. The contents were verified
  when they arrived, and after a delta no signature covers the whole array anyway; the CRC catches
  torn writes and SD-card rot at a fraction of SHA-256's cost on a Pi 4 (no SHA instructions), which
  keeps a cold load of 10 M entries well under a second. Writes are atomic: ``NAME.partial``, fsync,
  rename, fsync of the directory.

Data: a snapshot or local file holds ``count`` entries sorted ascending and unique; a delta holds
its ``adds`` then its ``removes``, each sorted and unique, disjoint. A delta takes version N to
N + 1 exactly; anything else is refused with a ``DenyListError`` and changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
import time
import zlib
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import numpy as np

from . import cose
from .cose import PrivateKey
from .keys import TrustedKey, TrustStore, key_id

KINDS = ("revoked", "blocked")
PASS_ID_SIZE = 16
ENTRY_SIZE = 8
MAGIC = b"PGDL"
FORMAT = 1
HASH = "sha256/8"
AAD = b"passgate deny list v1"
MAX_ENVELOPE = 64 * 1024
MAX_ENTRIES = 2**32 - 1  # the bucket index holds uint32 offsets
SNAPSHOT, DELTA, LOCAL = "snapshot", "delta", "local"

_CHUNK = 1 << 16  # elements per step of whole-array checks, to keep temporaries small
_PREFIX = struct.Struct("<4sI")
_CRC = struct.Struct("<I")
_entry_key = struct.Struct("<Q").unpack_from
_sha256 = hashlib.sha256
_LE = np.dtype("<u8")


class DenyListError(Exception):
    """Base of every error this module raises; the message is one line for an operator."""


class FormatError(DenyListError):
    """The bytes are not a well-formed deny list file of this format."""


class CorruptFileError(FormatError):
    """A local list file fails its checksum (torn write or storage rot)."""


class SignatureError(DenyListError):
    """The signature does not verify, or the data does not match the signed digest."""


class UntrustedKeyError(DenyListError):
    """Signed by a key the trust store does not hold, or by a key retired at that time."""


class SequenceError(DenyListError):
    """A delta does not follow the current version, or a snapshot is not newer (rollback)."""


class MismatchError(DenyListError):
    """A delta or snapshot for another kind or scope than the list it is applied to."""


def entry_key(pass_id: bytes) -> int:
    """The uint64 a pass id is stored as: SHA-256(pass_id)[:8], little-endian."""
    return _entry_key(_sha256(pass_id).digest())[0]


def keys_from_ids(ids: Iterable[bytes]) -> np.ndarray:
    """Sorted, unique entry keys for 16-byte pass ids (the hub's bulk path)."""
    buf = bytearray()
    for pass_id in ids:
        if not isinstance(pass_id, bytes) or len(pass_id) != PASS_ID_SIZE:
            raise ValueError(f"pass ids must be {PASS_ID_SIZE} bytes, got {pass_id!r:.60}")
        buf += _sha256(pass_id).digest()[:ENTRY_SIZE]
    return np.unique(np.frombuffer(buf, dtype=_LE).astype(np.uint64, copy=False))


def _check_keys(keys: np.ndarray, what: str) -> np.ndarray:
    """A read-only native uint64 array, refused unless sorted strictly ascending."""
    keys = np.asarray(keys).astype(np.uint64, copy=False)
    if keys.ndim != 1:
        raise FormatError(f"{what} must be a flat array")
    if len(keys) > MAX_ENTRIES:
        raise FormatError(f"{what}: more than {MAX_ENTRIES} entries")
    for start in range(0, max(len(keys) - 1, 0), _CHUNK):  # chunks: no 10 MB temporaries
        part = keys[start : start + _CHUNK + 1]
        if not bool(np.all(part[1:] > part[:-1])):
            raise FormatError(f"{what} are not sorted and unique")
    if keys.flags.writeable:
        keys = keys.view()
        keys.flags.writeable = False
    return keys


def _now() -> int:
    return int(time.time())


class DenyList:
    """An immutable set of pass ids with exact membership in about a microsecond.

    >>> dl = DenyList.from_ids([b"\\x01" * 16], kind="revoked", scope="acme")
    >>> b"\\x01" * 16 in dl, b"\\x02" * 16 in dl
    (True, False)
    """

    __slots__ = ("_index", "_keys", "_shift", "issued_at", "keys", "kind", "scope", "signer",
                 "version")

    def __init__(
        self,
        keys: np.ndarray,
        *,
        kind: str,
        scope: str,
        version: int,
        issued_at: int,
        signer: bytes | None = None,
    ) -> None:
        """``keys``: sorted unique entry keys (see ``keys_from_ids``); refused otherwise."""
        _check_meta(kind, scope, version, issued_at)
        self.keys = _check_keys(keys, "entries")
        self.kind, self.scope, self.version = kind, scope, version
        self.issued_at, self.signer = issued_at, signer
        bits = max(0, min(24, len(self.keys).bit_length() - 4))  # ~8-16 entries per bucket
        self._shift = 64 - bits
        index = np.empty((1 << bits) + 1, dtype=np.uint32)  # index[b]: first entry of bucket b
        for start in range(0, 1 << bits, _CHUNK):
            bounds = np.arange(start, min(start + _CHUNK, 1 << bits), dtype=np.uint64)
            index[start : start + len(bounds)] = np.searchsorted(
                self.keys, bounds << np.uint64(self._shift % 64)
            )
        index[-1] = len(self.keys)
        self._index = memoryview(index).cast("B").cast("I")
        self._keys = memoryview(self.keys).cast("B").cast("Q")

    @classmethod
    def from_ids(
        cls,
        ids: Iterable[bytes],
        *,
        kind: str = "revoked",
        scope: str = "",
        version: int = 1,
        issued_at: int | None = None,
    ) -> DenyList:
        """A list of 16-byte pass ids (duplicates are fine); ``issued_at`` defaults to now."""
        issued = _now() if issued_at is None else issued_at
        return cls(keys_from_ids(ids), kind=kind, scope=scope, version=version, issued_at=issued)

    @classmethod
    def empty(cls, kind: str, scope: str) -> DenyList:
        """Version 0, issued at epoch 0: what a gate holds before its first list arrives."""
        return cls(np.empty(0, np.uint64), kind=kind, scope=scope, version=0, issued_at=0)

    def __contains__(self, pass_id: bytes) -> bool:
        h = _entry_key(_sha256(pass_id).digest())[0]
        index = self._index
        bucket = h >> self._shift
        hi = index[bucket + 1]
        keys = self._keys
        i = bisect_left(keys, h, index[bucket], hi)
        return i < hi and keys[i] == h

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return (f"<DenyList {self.kind} scope={self.scope!r} version={self.version} "
                f"entries={len(self)}>")

    def age(self, now: float | None = None) -> float:
        """Seconds since this version was signed (what the gate's stale-list policy compares)."""
        return (time.time() if now is None else now) - self.issued_at

    def same_entries(self, other: DenyList) -> bool:
        """Whether both lists hold exactly the same entries."""
        return bool(np.array_equal(self.keys, other.keys))

    def apply(self, delta: Delta) -> DenyList:
        """The list at ``delta.version``: (entries − removes) ∪ adds; ``self`` is unchanged.

        Raises ``MismatchError`` or ``SequenceError`` when the delta is not for this list.
        """
        if (delta.kind, delta.scope) != (self.kind, self.scope):
            raise MismatchError(
                f"delta is for {delta.kind} list {delta.scope!r}, not {self.kind} list "
                f"{self.scope!r}"
            )
        if delta.base != self.version:
            raise SequenceError(
                f"delta {delta.base}→{delta.version} does not follow version {self.version}"
            )
        keys = _merge(self.keys, delta.adds, delta.removes)
        return DenyList(keys, kind=self.kind, scope=self.scope, version=delta.version,
                        issued_at=delta.issued_at, signer=delta.signer)

    def _header(self, kind_of_file: str) -> dict[str, Any]:
        return {"fmt": FORMAT, "type": kind_of_file, "hash": HASH, "kind": self.kind,
                "scope": self.scope, "version": self.version, "issued_at": self.issued_at,
                "count": len(self)}

    def save(self, path: str | Path) -> None:
        """Write the gate's local copy atomically: a power cut leaves the old file or this one."""
        header = self._header(LOCAL)
        header["signer"] = self.signer
        head = _head(cbor2.dumps(header))
        data = _little_endian(self.keys)
        crc = zlib.crc32(data, zlib.crc32(head))
        atomic_write(Path(path), (head, data, _CRC.pack(crc)))

    @classmethod
    def load(cls, path: str | Path) -> DenyList:
        """Load a file written by ``save`` (checksum checked, no signature: it was verified when it
        arrived). Raises ``FormatError`` / ``CorruptFileError``; signed files need ``read_signed``."""
        envelope, data, crc_ok = _read(path, local=True)
        header = _decode_header(envelope, LOCAL)
        if not crc_ok:
            raise CorruptFileError(f"{path}: checksum mismatch (torn write or damaged storage)")
        signer = header.get("signer")
        if signer is not None and not isinstance(signer, bytes):
            raise FormatError(f"{path}: bad 'signer' field")
        _check_count(data, header["count"])
        return cls(data, kind=header["kind"], scope=header["scope"], version=header["version"],
                   issued_at=header["issued_at"], signer=signer)

    def to_signed(self, private_key: PrivateKey) -> bytes:
        """The signed snapshot file of this list, for any static HTTP server or file share."""
        data = _little_endian(self.keys)
        return b"".join(_signed_parts(self._header(SNAPSHOT), [data], private_key))


@dataclass(frozen=True, eq=False)
class Delta:
    """Changes from version ``base`` to ``base + 1`` of one list, as entry keys.

    Build one with ``Delta.from_ids`` or ``Delta.between``; read a signed one with ``read_signed``.
    """

    kind: str
    scope: str
    base: int
    issued_at: int
    adds: np.ndarray
    removes: np.ndarray
    signer: bytes | None = None

    def __post_init__(self) -> None:
        _check_meta(self.kind, self.scope, self.base, self.issued_at)
        object.__setattr__(self, "adds", _check_keys(self.adds, "added entries"))
        object.__setattr__(self, "removes", _check_keys(self.removes, "removed entries"))
        if self.kind == "revoked" and len(self.removes):
            raise FormatError("revocation is permanent: a delta to a revoked list cannot remove")
        if len(np.intersect1d(self.adds, self.removes, assume_unique=True)):
            raise FormatError("a delta cannot both add and remove the same entry")

    @property
    def version(self) -> int:
        """The version this delta produces."""
        return self.base + 1

    @classmethod
    def from_ids(
        cls,
        *,
        kind: str,
        scope: str,
        base: int,
        adds: Iterable[bytes] = (),
        removes: Iterable[bytes] = (),
        issued_at: int | None = None,
    ) -> Delta:
        """A delta adding and removing 16-byte pass ids; ``issued_at`` defaults to now."""
        return cls(kind, scope, base, _now() if issued_at is None else issued_at,
                   keys_from_ids(adds), keys_from_ids(removes))

    @classmethod
    def between(cls, old: DenyList, new: DenyList, *, issued_at: int | None = None) -> Delta:
        """The delta that turns ``old`` into ``new`` (which must be version ``old.version + 1``)."""
        if (old.kind, old.scope) != (new.kind, new.scope):
            raise MismatchError("both lists must have the same kind and scope")
        if new.version != old.version + 1:
            raise SequenceError(f"version {new.version} does not follow {old.version}")
        adds = np.setdiff1d(new.keys, old.keys, assume_unique=True)
        removes = np.setdiff1d(old.keys, new.keys, assume_unique=True)
        issued = new.issued_at if issued_at is None else issued_at
        return cls(old.kind, old.scope, old.version, issued, adds, removes)

    def to_signed(self, private_key: PrivateKey) -> bytes:
        """The signed delta file."""
        header = {"fmt": FORMAT, "type": DELTA, "hash": HASH, "kind": self.kind,
                  "scope": self.scope, "base": self.base, "version": self.version,
                  "issued_at": self.issued_at, "adds": len(self.adds),
                  "removes": len(self.removes)}
        arrays = [_little_endian(self.adds), _little_endian(self.removes)]
        return b"".join(_signed_parts(header, arrays, private_key))


def sign_snapshot(
    private_key: PrivateKey,
    ids: Iterable[bytes],
    *,
    kind: str,
    scope: str,
    version: int,
    issued_at: int | None = None,
) -> bytes:
    """A signed snapshot file of 16-byte pass ids, in one call (the hub's export)."""
    dl = DenyList.from_ids(ids, kind=kind, scope=scope, version=version, issued_at=issued_at)
    return dl.to_signed(private_key)


def sign_delta(
    private_key: PrivateKey,
    *,
    kind: str,
    scope: str,
    base: int,
    adds: Iterable[bytes] = (),
    removes: Iterable[bytes] = (),
    issued_at: int | None = None,
) -> bytes:
    """A signed delta file from version ``base`` to ``base + 1``, in one call (the hub's export)."""
    delta = Delta.from_ids(kind=kind, scope=scope, base=base, adds=adds, removes=removes,
                           issued_at=issued_at)
    return delta.to_signed(private_key)


def read_signed(source: bytes | str | Path, trust: TrustStore) -> DenyList | Delta:
    """Verify a signed snapshot or delta (bytes, or a file path) against ``trust``.

    Raises ``FormatError``, ``UntrustedKeyError`` or ``SignatureError``; nothing is returned unless
    the signature, the key's window and the data digest all check out.
    """
    envelope, data, _ = _read(source, local=False)
    header, key = _verify_envelope(envelope, trust)
    if _sha256(data).digest() != header["digest"]:
        raise SignatureError("data does not match the signed digest (tampered or truncated)")
    return _build(header, data, key.kid)


def inspect(source: bytes | str | Path, trust: TrustStore | None = None) -> dict[str, Any]:
    """A JSON-ready summary of any deny list file; ``status`` says what was checked and ``ok`` is
    True / False, or None when a signature was not checked (no trust store).

    Malformed files raise ``FormatError``; a bad signature or checksum is reported, not raised.
    """
    envelope, _, crc_ok = _read(source, local=None)
    if envelope[:1] != b"\xd2":
        header = _decode_header(envelope, LOCAL)
        signer, ok = header.get("signer"), crc_ok
        status = "local file, checksum ok" if ok else "local file, checksum MISMATCH"
    else:
        try:
            msg = cose.decode_sign1(envelope)
        except cose.CoseError as exc:
            raise FormatError(f"bad signature envelope: {exc}") from None
        header, signer, ok = _decode_header(msg.payload, None), msg.kid, None
        status = "signature not checked (no trust store given)"
        if trust is not None:
            try:
                read_signed(source, trust)
                ok, status = True, "signature valid"
            except DenyListError as exc:
                ok, status = False, f"INVALID: {exc}"
    summary = {key: header[key] for key in ("type", "kind", "scope", "version", "issued_at")}
    if header["type"] == DELTA:
        summary.update(base=header["base"], adds=header["adds"], removes=header["removes"])
    else:
        summary["entries"] = header["count"]
    summary.update(signer=signer.hex() if isinstance(signer, bytes) else None, status=status, ok=ok)
    return summary


class LiveDenyList:
    """The gate's current list for one kind and scope: lookups never wait, updates swap atomically.

    >>> live = LiveDenyList("/var/lib/passgate/revoked-acme.pgdl", kind="revoked", scope="acme")
    >>> live.apply_signed(delta_bytes, trust)        # doctest: +SKIP
    >>> pass_id in live.current                      # doctest: +SKIP

    A reader takes ``live.current`` once per decision; ``apply_signed`` verifies, builds the new
    list beside the old one, saves it atomically, then swaps one reference. Without a file the
    holder starts from ``DenyList.empty`` (version 0, infinitely old: the stale-list policy rules).
    """

    def __init__(self, path: str | Path, *, kind: str, scope: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if self.path.exists():
            current = DenyList.load(self.path)
            if (current.kind, current.scope) != (kind, scope):
                raise MismatchError(
                    f"{self.path} holds {current.kind} list {current.scope!r}, not {kind} "
                    f"list {scope!r}"
                )
        else:
            current = DenyList.empty(kind, scope)
        self._current = current

    @property
    def current(self) -> DenyList:
        """The list in force now (immutable; keep the reference for one whole decision)."""
        return self._current

    def __contains__(self, pass_id: bytes) -> bool:
        return pass_id in self._current

    def apply_signed(self, source: bytes | str | Path, trust: TrustStore) -> DenyList:
        """Verify and apply a signed delta or a newer snapshot; on any error nothing changes.

        Returns the new current list. Raises a ``DenyListError`` (``SequenceError`` for a delta
        that does not follow, or a snapshot that is not newer: replaying an old one is refused).
        """
        update = read_signed(source, trust)
        with self._lock:
            current = self._current
            if isinstance(update, Delta):
                new = current.apply(update)
            elif (update.kind, update.scope) != (current.kind, current.scope):
                raise MismatchError(
                    f"snapshot is for {update.kind} list {update.scope!r}, not {current.kind} "
                    f"list {current.scope!r}"
                )
            elif update.version <= current.version:
                raise SequenceError(
                    f"snapshot version {update.version} is not newer than {current.version}"
                )
            else:
                new = update
            new.save(self.path)
            self._current = new
        return new


# --- encoding ------------------------------------------------------------------------------


def _check_meta(kind: object, scope: object, version: object, issued_at: object) -> None:
    if kind not in KINDS:
        raise FormatError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(scope, str):
        raise FormatError("scope must be a string")
    for name, value in (("version", version), ("issued_at", issued_at)):
        if type(value) is not int or value < 0:
            raise FormatError(f"{name} must be a non-negative integer")


def _little_endian(keys: np.ndarray) -> np.ndarray:
    return keys.astype(_LE, copy=False)


def _head(envelope: bytes) -> bytes:
    pad = -(_PREFIX.size + len(envelope)) % ENTRY_SIZE
    return _PREFIX.pack(MAGIC, len(envelope)) + envelope + bytes(pad)


def _signed_parts(
    header: dict[str, Any], arrays: list[np.ndarray], private_key: PrivateKey
) -> list[bytes | np.ndarray]:
    digest = _sha256()
    for array in arrays:
        digest.update(array)
    header["digest"] = digest.digest()
    envelope = cose.sign1(cbor2.dumps(header), private_key, kid=key_id(private_key),
                          external_aad=AAD)
    return [_head(envelope), *arrays]


def atomic_write(path: str | Path, parts: Iterable[bytes | np.ndarray]) -> None:
    """Write, fsync, rename over ``path``, fsync the directory (one writer per path).

    Also for publishing signed files into a directory a web server is serving: a client never
    downloads half a file.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- decoding ------------------------------------------------------------------------------


def _read(source: bytes | str | Path, *, local: bool | None) -> tuple[bytes, np.ndarray, bool]:
    """Split a file into (envelope, native entry array, crc ok) without copying the bytes case.

    ``local``: True expects a CRC trailer, False refuses one, None decides from the envelope.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return _split(memoryview(source).cast("B"), local, "data")
    path = Path(source)
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(_PREFIX.size)
        length = _prefix_length(prefix, str(path))
        envelope = f.read(length)
        pad = f.read(-(_PREFIX.size + length) % ENTRY_SIZE)
        _check_single_item(envelope)
        trailer = _has_trailer(envelope, local)
        body_size = size - f.tell() - (_CRC.size if trailer else 0)
        if len(envelope) != length or body_size < 0 or body_size % ENTRY_SIZE or any(pad):
            raise FormatError(f"{path}: truncated or misaligned deny list file")
        data = np.empty(body_size // ENTRY_SIZE, dtype=_LE)
        if f.readinto(memoryview(data).cast("B")) != body_size:
            raise FormatError(f"{path}: truncated deny list file")
        crc_ok = True
        if trailer:
            crc = zlib.crc32(data, zlib.crc32(prefix + envelope + pad))
            crc_ok = f.read(_CRC.size) == _CRC.pack(crc)
    return envelope, data.astype(np.uint64, copy=False), crc_ok


def _split(buf: memoryview, local: bool | None, name: str) -> tuple[bytes, np.ndarray, bool]:
    length = _prefix_length(bytes(buf[: _PREFIX.size]), name)
    start = _PREFIX.size + length
    envelope = bytes(buf[_PREFIX.size : start])
    data_start = start + (-start % ENTRY_SIZE)
    _check_single_item(envelope)
    trailer = _has_trailer(envelope, local)
    end = len(buf) - (_CRC.size if trailer else 0)
    if len(envelope) != length or end < data_start or (end - data_start) % ENTRY_SIZE or any(
        buf[start:data_start]
    ):
        raise FormatError(f"{name}: truncated or misaligned deny list file")
    data = np.frombuffer(buf, dtype=_LE, count=(end - data_start) // ENTRY_SIZE, offset=data_start)
    crc_ok = not trailer or _CRC.pack(zlib.crc32(buf[:end])) == bytes(buf[end:])
    return envelope, data.astype(np.uint64, copy=False), crc_ok


def _check_single_item(envelope: bytes) -> None:
    """Refuse bytes after the envelope's one CBOR item: a longer length must not go unnoticed."""
    fp = io.BytesIO(envelope)
    try:
        cbor2.CBORDecoder(fp).decode()
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise FormatError(f"header is not CBOR ({type(exc).__name__})") from None
    if fp.tell() != len(envelope):
        raise FormatError("stray bytes after the header")


def _prefix_length(prefix: bytes, name: str) -> int:
    if len(prefix) != _PREFIX.size:
        raise FormatError(f"{name}: too short to be a deny list file")
    magic, length = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise FormatError(f"{name}: not a passgate deny list file (bad magic)")
    if not 0 < length <= MAX_ENVELOPE:
        raise FormatError(f"{name}: bad header length {length}")
    return length


def _has_trailer(envelope: bytes, local: bool | None) -> bool:
    signed = envelope[:1] == b"\xd2"  # CBOR tag 18: COSE_Sign1
    if local is None:
        return not signed
    if local and signed:
        raise FormatError("this is a signed network file: verify it with read_signed(..., trust)")
    if not local and not signed:
        raise FormatError("this is a local (unsigned) list file, not a signed snapshot or delta")
    return local


_FIELDS: dict[str, tuple[str, ...]] = {
    SNAPSHOT: ("count", "digest"),
    DELTA: ("base", "adds", "removes", "digest"),
    LOCAL: ("count",),
}


def _decode_header(payload: bytes, expected: str | None) -> dict[str, Any]:
    try:
        header = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise FormatError(f"header is not CBOR ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise FormatError("header is not a map")
    if header.get("fmt") != FORMAT or header.get("hash") != HASH:
        raise FormatError(f"unsupported format {header.get('fmt')!r} / hash {header.get('hash')!r}")
    kind_of_file = header.get("type")
    # isinstance first: a list or map as the type would make the dict lookup raise TypeError
    if not isinstance(kind_of_file, str) or kind_of_file not in _FIELDS or (
        expected is not None and kind_of_file != expected
    ):
        raise FormatError(f"unexpected file type {kind_of_file!r}")
    for name in _FIELDS[kind_of_file]:
        value = header.get(name)
        if name == "digest":
            if not isinstance(value, bytes) or len(value) != 32:
                raise FormatError("bad 'digest' field")
        elif type(value) is not int or value < 0:
            raise FormatError(f"bad {name!r} field")
    _check_meta(header.get("kind"), header.get("scope"), header.get("version"),
                header.get("issued_at"))
    if kind_of_file == DELTA and header["version"] != header["base"] + 1:
        raise FormatError("a delta must go from version N to N + 1")
    return header


def _verify_envelope(envelope: bytes, trust: TrustStore) -> tuple[dict[str, Any], TrustedKey]:
    try:
        msg = cose.decode_sign1(envelope)
        _ = msg.alg  # raises for an alg that is unsupported or not in the protected header
    except cose.CoseError as exc:
        raise FormatError(f"bad signature envelope: {exc}") from None
    candidates = trust.candidates(msg.kid)
    if not candidates:
        kid = msg.kid.hex() if msg.kid else "none"
        raise UntrustedKeyError(f"signed by a key not in the trust store (kid {kid})")
    signer = trust.find_signer(msg, AAD)
    if signer is None:
        raise SignatureError("signature does not verify")
    header = _decode_header(msg.payload, None)
    if header["type"] == LOCAL:
        raise FormatError("a local list file cannot be signed")
    if not signer.accepts_issue_time(header["issued_at"]):
        raise UntrustedKeyError(f"key {signer.kid.hex()} was retired when this was signed")
    return header, signer


def _check_count(data: np.ndarray, count: int) -> None:
    if len(data) != count:
        raise FormatError(f"header says {count} entries, file holds {len(data)}")


def _build(header: dict[str, Any], data: np.ndarray, signer: bytes) -> DenyList | Delta:
    meta = {"kind": header["kind"], "scope": header["scope"], "issued_at": header["issued_at"]}
    if header["type"] == SNAPSHOT:
        _check_count(data, header["count"])
        return DenyList(data, version=header["version"], signer=signer, **meta)
    _check_count(data, header["adds"] + header["removes"])
    adds, removes = data[: header["adds"]], data[header["adds"] :]
    return Delta(base=header["base"], adds=adds, removes=removes, signer=signer, **meta)


def _merge(old: np.ndarray, adds: np.ndarray, removes: np.ndarray) -> np.ndarray:
    """(old − removes) ∪ adds in one pass: only the old and the new array are ever allocated."""
    if not len(old):
        return adds.copy()
    last = len(old) - 1
    rpos = np.searchsorted(old, removes)
    rpos = rpos[old[np.minimum(rpos, last)] == removes]
    apos = np.searchsorted(old, adds)
    fresh = old[np.minimum(apos, last)] != adds
    adds, apos = adds[fresh], apos[fresh]
    starts = np.unique(apos)  # adds[lo:hi] go in before old[start]
    lo, hi = np.searchsorted(apos, starts, "left"), np.searchsorted(apos, starts, "right")
    runs = dict(zip(starts.tolist(), zip(lo.tolist(), hi.tolist(), strict=True), strict=True))
    removed = set(rpos.tolist())
    parts, prev = [], 0
    for pos in np.union1d(starts, rpos).tolist():
        parts.append(old[prev:pos])
        run = runs.get(pos)
        if run:
            parts.append(adds[run[0] : run[1]])
        prev = pos + 1 if pos in removed else pos
    parts.append(old[prev:])
    return np.concatenate(parts)

