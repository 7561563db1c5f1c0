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

On a gate the array is not read into memory but mapped from the gate's own file (``DenyList.map``):
its pages are the page cache's, shared and clean, so the kernel can drop them under pressure and
read them back on the next lookup that needs them, where anonymous memory could only be swapped or
killed. Updates never hold two lists either: a delta is merged a step (1 MiB) at a time from the
list in force straight into the new file (``apply_to_file``), a signed snapshot is copied from its
file a step at a time while its digest is computed (``LiveDenyList.apply_signed``), and the new file
is then mapped and swapped in; the checksum and the bucket index are computed as the steps pass, so
nothing is read twice. A reader still holding the old list keeps a valid mapping: the old file was
replaced by a rename, and its pages live until the last reference to the old list is dropped (no
mapping is ever closed explicitly). The gate's file must therefore only ever be replaced, never
changed in place (cutting a mapped file short would fault the readers, SIGBUS); every writer here
replaces it by rename.

File format (all integers little-endian)::

    "PGDL"  u32 envelope length  envelope  zero padding to 8 bytes  data  [u32 crc32 — local only]

- *Network files* (``snapshot``, ``delta``; served from any static HTTP server or file share): the
  envelope is a tagged COSE_Sign1 (``passgate.cose``) whose payload is a CBOR header map carrying the
  SHA-256 ``digest`` of the data section, signed with ``external_aad = AAD`` so a deny-list
  signature can never pass for a pass signature or the reverse. Only a ``denylist`` key whose
  ``scope`` is the list's own verifies it (``TrustedKey.purpose``): a pass issuer's key, or the
  list key of another scope, is refused even when its signature is good. The array stays outside
  the signed payload so a 10 M entry snapshot is verified with one streaming SHA-256 and never
  copied through cbor2 or libsodium (80 MB instead of ~240 MB peak). Always verified against a
  ``TrustStore``.
- *Local files* (``DenyList.save`` / ``load``; the gate's own copy): the envelope is the plain
  CBOR header map and a CRC-32 of everything before it ends the file. The contents were verified
  when they arrived, and after a delta no signature covers the whole array anyway; the CRC catches
  torn writes and SD-card rot at a fraction of SHA-256's cost on a Pi 4 (no SHA instructions), which
  keeps a cold load of 10 M entries well under a second. Writes are atomic: ``NAME.partial``, fsync,
  rename, fsync of the directory.

Data: a snapshot or local file holds ``count`` entries sorted ascending and unique; a delta holds
its ``adds`` then its ``removes``, each sorted and unique, disjoint. A delta takes version N to a
later version (N + 1, or a later one for a compacted delta: every change in between at once), and
applies only to a list at N; anything else is refused with a ``DenyListError`` and changes nothing.

Versions carry an epoch: ``version = epoch << 32 | counter`` (``make_version``). A hub restored
from a backup counts from an older version than its gates hold; it starts a new epoch, whose
versions are all larger, and the gates take its snapshot as newer. The comparison stays one
integer ``<``, so an old snapshot replayed is still refused, files and older gates are unchanged
(a file of a list that never changed epoch is epoch 0), and nothing but a signer trusted for the
list's scope can move a list to a later epoch.

Reading fails closed, cheaply: a file's size is checked against ``max_bytes`` (``TooLargeError``,
from ``fstat`` alone; ``DEFAULT_MAX_BYTES`` is the gate's cap) and against the entry count its
header states before any data is allocated or read, and a signed file's signature is checked
over the envelope before its data is read. The data is then read (or mapped and checked) in
1 MiB steps (a local file's order is checked as it arrives, so a hole of zeros is refused after
the first step). Every refusal is a one-line ``DenyListError`` subclass (``OSError`` only when a
file cannot be opened); any damage to a local file is ``CorruptFileError``. ``rebuild`` recovers
the newest list it can from the signed files a gate kept, one file at a time.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import stat
import struct
import threading
import time
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import cbor2
import numpy as np

from . import cose
from .cose import PrivateKey
from .keys import TrustedKey, TrustStore, key_id
from .wire import KeyPurpose

KINDS = ("revoked", "blocked")
PASS_ID_SIZE = 16
ENTRY_SIZE = 8
MAGIC = b"PGDL"
FORMAT = 1
HASH = "sha256/8"
AAD = b"passgate deny list v1"
MAX_ENVELOPE = 64 * 1024
MAX_ENTRIES = 2**32 - 1  # the bucket index holds uint32 offsets
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
"""The gate's default cap on one list file (``max_bytes``): 512 MiB, about 64 M entries."""
SNAPSHOT, DELTA, LOCAL = "snapshot", "delta", "local"
EPOCH_SHIFT = 32  # a version's low 32 bits count changes within its epoch
MAX_VERSION = 2**63 - 1  # what the hub's BIGINT and the wire carry

_CHUNK = 1 << 16  # elements per step of whole-array checks, to keep temporaries small
_READ = 1 << 20  # bytes per read of a file's data: memory grows only as far as the data is read
_BLOCK = 2 << 20  # bytes a list file is written in, at offsets that are multiples of it
_FLUSH = 8 << 20  # bytes written between flushes of a list file being written (each commits a journal)
_PREFIX = struct.Struct("<4sI")
_CRC = struct.Struct("<I")
_TAMPERED = "data does not match the signed digest (tampered or truncated)"
_entry_key = struct.Struct("<Q").unpack_from
_sha256 = hashlib.sha256
# The last pass id looked up and its key, as one tuple (read and replaced whole, so no thread sees a
# key beside another id; holding the id keeps it alive, so ``is`` cannot match another object): a
# scan looks its pass up in the revoked and then the blocked list, and hashes it once.
_last_key: tuple[bytes, int] = (b"", _entry_key(_sha256(b"").digest())[0])
_LE = np.dtype("<u8")


class DenyListError(Exception):
    """Base of every error this module raises; the message is one line for an operator."""


class FormatError(DenyListError):
    """The bytes are not a well-formed deny list file of this format."""


class CorruptFileError(FormatError):
    """A local list file is damaged: torn, truncated, bad checksum, bad header (storage rot)."""


class TooLargeError(FormatError):
    """A file over the caller's ``max_bytes`` (refused from its size, unread), or a list that does
    not fit in memory."""


class SignatureError(DenyListError):
    """The signature does not verify, or the data does not match the signed digest."""


class UntrustedKeyError(DenyListError):
    """Signed by a key the trust store does not hold, one not trusted for this list (a pass key,
    the list key of another scope), a revoked key, or a key retired at that time."""


class SequenceError(DenyListError):
    """A delta does not follow the current version, or a snapshot is not newer (rollback)."""


class MismatchError(DenyListError):
    """A delta or snapshot for another kind or scope than the list it is applied to."""


def make_version(epoch: int, counter: int = 0) -> int:
    """The version number of change ``counter`` of ``epoch``."""
    if not 0 <= counter < 1 << EPOCH_SHIFT or not 0 <= epoch <= MAX_VERSION >> EPOCH_SHIFT:
        raise ValueError(f"epoch {epoch} / counter {counter} out of range")
    return epoch << EPOCH_SHIFT | counter


def epoch_of(version: int) -> int:
    """The epoch a version belongs to (0 for lists that never started a new one)."""
    return version >> EPOCH_SHIFT


def describe_version(version: int) -> str:
    """A version for an operator: ``12``, or ``12 (epoch 3, change 12)`` past epoch 0."""
    epoch, counter = epoch_of(version), version & ((1 << EPOCH_SHIFT) - 1)
    return f"{version} (epoch {epoch}, change {counter})" if epoch else str(version)


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
    keys = np.sort(np.frombuffer(buf, dtype=_LE).astype(np.uint64))
    first = np.ones(len(keys), dtype=bool)  # not numpy.unique: numpy 2.4's hashes, 50 x slower at 10 M
    first[1:] = keys[1:] != keys[:-1]
    return keys[first]


def _check_keys(keys: np.ndarray, what: str) -> np.ndarray:
    """A read-only native uint64 array, refused unless sorted strictly ascending."""
    keys = np.ascontiguousarray(np.asarray(keys).astype(np.uint64, copy=False))
    if keys.ndim != 1:
        raise FormatError(f"{what} must be a flat array")
    if len(keys) > MAX_ENTRIES:
        raise FormatError(f"{what}: more than {MAX_ENTRIES} entries")
    for start in range(0, len(keys), _CHUNK):  # chunks, each with the last entry before it
        if not _ascending(keys[max(start - 1, 0) : start + _CHUNK]):  # no 10 MB temporaries
            raise FormatError(f"{what} are not sorted and unique")
    return _read_only(keys)


def _ascending(part: np.ndarray) -> bool:
    return bool(np.all(part[1:] > part[:-1]))


def _follows(step: np.ndarray, last: int) -> bool:
    """Whether a non-empty step of entries is ascending and starts above ``last``."""
    return int(step[0]) > last and _ascending(step)


def _read_only(keys: np.ndarray) -> np.ndarray:
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
        self._setup(_check_keys(keys, "entries"), kind, scope, version, issued_at, signer)

    @classmethod
    def _of_checked(cls, keys: np.ndarray, header: dict[str, Any], signer: bytes | None,
                    buckets: _Buckets | None = None) -> DenyList:
        """A list of native uint64 ``keys`` already known sorted and unique, from a checked header;
        ``buckets``: its index, when it was built as the entries passed."""
        dl = cls.__new__(cls)
        dl._setup(_read_only(keys), header["kind"], header["scope"], header["version"],
                  header["issued_at"], signer, buckets)
        return dl

    def _setup(self, keys: np.ndarray, kind: str, scope: str, version: int, issued_at: int,
               signer: bytes | None, buckets: _Buckets | None = None) -> None:
        self.keys = keys
        self.kind, self.scope, self.version = kind, scope, version
        self.issued_at, self.signer = issued_at, signer
        if buckets is None:
            buckets = _Buckets(len(keys))
            for start in range(0, len(keys), _READ // ENTRY_SIZE):
                buckets.add(keys[start : start + _READ // ENTRY_SIZE])
        self._shift = buckets.shift
        self._index = buckets.done().data.cast("B").cast("I")
        self._keys = self.keys.data.cast("B").cast("Q")

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
        global _last_key
        last = _last_key
        if last[0] is pass_id:
            h = last[1]
        else:
            h = _entry_key(_sha256(pass_id).digest())[0]
            if type(pass_id) is bytes:  # never a buffer that could change under the same identity
                _last_key = (pass_id, h)
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
        merge = self._merge(delta)
        keys = np.empty(merge.count, dtype=np.uint64)
        at = 0
        for step in merge.steps():
            keys[at : at + len(step)] = step
            at += len(step)
        return DenyList(keys, kind=self.kind, scope=self.scope, version=delta.version,
                        issued_at=delta.issued_at, signer=delta.signer)

    def apply_to_file(self, delta: Delta, path: str | Path) -> DenyList:
        """``apply``, with the new list written to ``path`` (atomically, like ``save``) and mapped
        from it instead of built in memory: the merge goes a step at a time from this list into
        the file, so memory holds this list, the delta, the new bucket index and a few MB.

        ``self`` is unchanged and stays valid, also when ``path`` is the file it is mapped from.
        The file is the one ``apply(delta).save(path)`` writes, byte for byte.
        """
        merge = self._merge(delta)
        header = _local_header(self.kind, self.scope, delta.version, delta.issued_at, merge.count,
                               delta.signer)
        return _save_steps(Path(path), header, merge.steps(), merge.buckets())

    def _merge(self, delta: Delta) -> _Merge:
        """The list at ``delta.version``, to be built a step at a time."""
        if (delta.kind, delta.scope) != (self.kind, self.scope):
            raise MismatchError(
                f"delta is for {delta.kind} list {delta.scope!r}, not {self.kind} list "
                f"{self.scope!r}"
            )
        if delta.base != self.version:
            raise SequenceError(
                f"delta {delta.base}→{delta.version} does not follow version {self.version}"
            )
        _check_meta(self.kind, self.scope, delta.version, delta.issued_at)
        return _Merge(self, delta.adds, delta.removes)

    def _find(self, needles: np.ndarray) -> np.ndarray:
        """``numpy.searchsorted(self.keys, needles)``, each search kept within its bucket: a few
        reads of one bucket (a cache line or two) instead of ~26 across the whole list."""
        index = np.frombuffer(self._index, dtype=np.uint32)
        buckets = (needles >> np.uint64(self._shift)).astype(np.intp)
        lo, hi = index[buckets].astype(np.intp), index[buckets + 1].astype(np.intp)
        while (todo := lo < hi).any():
            mid = (lo + hi) >> 1
            less = self.keys[np.minimum(mid, len(self.keys) - 1)] < needles
            lo = np.where(todo & less, mid + 1, lo)
            hi = np.where(todo & ~less, mid, hi)
        return lo

    def _header(self, kind_of_file: str) -> dict[str, Any]:
        return {"fmt": FORMAT, "type": kind_of_file, "hash": HASH, "kind": self.kind,
                "scope": self.scope, "version": self.version, "issued_at": self.issued_at,
                "count": len(self)}

    def save(self, path: str | Path) -> None:
        """Write the gate's local copy atomically: a power cut leaves the old file or this one."""
        head = _head(cbor2.dumps(_local_header(self.kind, self.scope, self.version,
                                               self.issued_at, len(self), self.signer)))
        data = _little_endian(self.keys)
        crc = zlib.crc32(data, zlib.crc32(head))
        atomic_write(Path(path), (head, data, _CRC.pack(crc)))

    @classmethod
    def load(cls, path: str | Path, *, max_bytes: int | None = None) -> DenyList:
        """Load a file written by ``save`` (checksum checked, no signature: it was verified when it
        arrived; signed files need ``read_signed``).

        Any damage (truncated, bad magic or header, wrong size, entries out of order, checksum
        mismatch, a signed file in its place) raises ``CorruptFileError``; a file over
        ``max_bytes`` raises ``TooLargeError`` unread; one that cannot be opened, ``OSError``.
        """
        with _Input(path) as src:
            src.check_size(max_bytes)
            try:
                head = _parse_head(src, local=True)
                crc = _Crc32(head.head)
                data = src.entries(head.entries, crc.update, check_order=True)
                if src.read(_CRC.size) != _CRC.pack(crc.value):
                    raise CorruptFileError("checksum mismatch (torn write or damaged storage)")
            except (DenyListError, MemoryError) as exc:
                raise CorruptFileError(src.named(exc)) from None
        return cls._of_checked(data.astype(np.uint64, copy=False), head.header,
                               head.header.get("signer"))

    @classmethod
    def map(cls, path: str | Path, *, max_bytes: int | None = None) -> DenyList:
        """Map a file written by ``save`` rather than read it into the process (the gate's way),
        after the same checks as ``load``, with the same errors, which also build the bucket index.

        The checks read the file a step at a time through one buffer, not through the mapping:
        storage that cannot be read is an ``OSError`` here (the gate sets the file aside and
        rebuilds it), where a mapped read would kill the process (SIGBUS) at every start. Then a
        page at a time is touched, mapping what was just read into the page cache: lookups do
        not wait for faults, and the process's RSS shows the list. The mapping lives as long as
        the list (or an array taken from it) is referenced; the file may be replaced meanwhile,
        but must not be changed in place.
        """
        with _Input(path) as src:
            src.check_size(max_bytes)
            try:
                head = _parse_head(src, local=True)
                crc, buckets, last = _Crc32(head.head), _Buckets(head.entries), -1
                for step in src.steps(head.entries):
                    if not _follows(step, last):
                        raise FormatError("entries are not sorted and unique")
                    last = int(step[-1])
                    crc.update(step.data)
                    buckets.add(step)
                if src.read(_CRC.size) != _CRC.pack(crc.value):
                    raise CorruptFileError("checksum mismatch (torn write or damaged storage)")
                assert src.file is not None
                mapping, keys = _map(src.file.fileno(), len(head.head), head.entries)
            except (DenyListError, MemoryError) as exc:
                raise CorruptFileError(src.named(exc)) from None
        keys[:: mmap.PAGESIZE // ENTRY_SIZE].max(initial=0)  # an entry a page: maps them all
        _advise_random(mapping)
        return cls._of_checked(keys, head.header, head.header.get("signer"), buckets)

    def to_signed(self, private_key: PrivateKey) -> bytes:
        """The signed snapshot file of this list, for any static HTTP server or file share."""
        data = _little_endian(self.keys)
        return b"".join(_signed_parts(self._header(SNAPSHOT), [data], private_key))


@dataclass(frozen=True, eq=False)
class Delta:
    """Changes from version ``base`` to ``base + 1`` of one list, as entry keys; or, compacted, to
    a later version ``upto``: every change in between at once (a hub sends a gate that was away one
    delta instead of many, or a snapshot). Applies only to a list at ``base``, like any delta.

    Build one with ``Delta.from_ids`` or ``Delta.between``; read a signed one with ``read_signed``.
    """

    kind: str
    scope: str
    base: int
    issued_at: int
    adds: np.ndarray
    removes: np.ndarray
    signer: bytes | None = None
    upto: int | None = None  # the version it brings the list to, when not ``base + 1``

    def __post_init__(self) -> None:
        _check_meta(self.kind, self.scope, self.base, self.issued_at)
        if self.upto is not None:
            _check_meta(self.kind, self.scope, self.upto, self.issued_at)
            if self.upto <= self.base:
                raise FormatError(f"a delta from version {self.base} must go to a later one, not {self.upto}")
            if self.upto == self.base + 1:  # one spelling of one delta
                object.__setattr__(self, "upto", None)
        object.__setattr__(self, "adds", _check_keys(self.adds, "added entries"))
        object.__setattr__(self, "removes", _check_keys(self.removes, "removed entries"))
        if self.kind == "revoked" and len(self.removes):
            raise FormatError("revocation is permanent: a delta to a revoked list cannot remove")
        if len(np.intersect1d(self.adds, self.removes, assume_unique=True)):
            raise FormatError("a delta cannot both add and remove the same entry")

    @property
    def version(self) -> int:
        """The version this delta produces."""
        return self.base + 1 if self.upto is None else self.upto

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
        version: int | None = None,
    ) -> Delta:
        """A delta adding and removing 16-byte pass ids; ``issued_at`` defaults to now, ``version``
        (the one it brings the list to) to ``base + 1``."""
        return cls(kind, scope, base, _now() if issued_at is None else issued_at,
                   keys_from_ids(adds), keys_from_ids(removes), upto=version)

    @classmethod
    def between(cls, old: DenyList, new: DenyList, *, issued_at: int | None = None) -> Delta:
        """The delta that turns ``old`` into ``new`` (a later version: compacted when not the next)."""
        if (old.kind, old.scope) != (new.kind, new.scope):
            raise MismatchError("both lists must have the same kind and scope")
        if new.version <= old.version:
            raise SequenceError(f"version {new.version} does not follow {old.version}")
        adds = np.setdiff1d(new.keys, old.keys, assume_unique=True)
        removes = np.setdiff1d(old.keys, new.keys, assume_unique=True)
        issued = new.issued_at if issued_at is None else issued_at
        return cls(old.kind, old.scope, old.version, issued, adds, removes, upto=new.version)

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
    version: int | None = None,
) -> bytes:
    """A signed delta file from version ``base`` to ``base + 1`` (or to ``version``, compacted), in
    one call (the hub's export)."""
    delta = Delta.from_ids(kind=kind, scope=scope, base=base, adds=adds, removes=removes,
                           issued_at=issued_at, version=version)
    return delta.to_signed(private_key)


def read_signed(
    source: bytes | str | Path, trust: TrustStore, *, max_bytes: int | None = None
) -> DenyList | Delta:
    """Verify a signed snapshot or delta (bytes, or a file path) against ``trust``.

    Raises ``FormatError`` (``TooLargeError`` over ``max_bytes``), ``UntrustedKeyError`` or
    ``SignatureError``; nothing is returned unless the signature, the key's window and the data
    digest all check out. The data is read only once the size fits the header and the signature
    over the header verifies.
    """
    with _signed(source, trust, max_bytes) as (src, head, key):
        return _received(src, head, key.kid)


@contextmanager
def _signed(
    source: bytes | str | Path, trust: TrustStore, max_bytes: int | None
) -> Iterator[tuple[_Input, _Head, TrustedKey]]:
    """A signed file open with its size, head and signature checked and its data not read yet;
    anything the block raises comes out as a one-line ``DenyListError`` naming the file."""
    with _Input(source) as src:
        src.check_size(max_bytes)
        try:
            head = _parse_head(src, local=False)
            yield src, head, _verify(head, trust)
        except MemoryError as exc:
            raise TooLargeError(src.named(exc)) from None
        except DenyListError as exc:
            raise type(exc)(src.named(exc)) from None


def _received(src: _Input, head: _Head, signer: bytes) -> DenyList | Delta:
    """The snapshot or delta whose verified head was just read, its data read into memory."""
    digest = _sha256()
    data = src.entries(head.entries, digest.update, check_order=False)
    if digest.digest() != head.header["digest"]:
        raise SignatureError(_TAMPERED)
    return _build(head.header, data, signer)


def inspect(
    source: bytes | str | Path, trust: TrustStore | None = None, *, max_bytes: int | None = None
) -> dict[str, Any]:
    """A JSON-ready summary of any deny list file; ``status`` says what was checked and ``ok`` is
    True / False, or None when a signature was not checked (no trust store).

    Malformed files raise ``FormatError`` (``CorruptFileError`` for a damaged local file,
    ``TooLargeError`` over ``max_bytes``); a bad signature or checksum is reported, not raised.
    """
    with _Input(source) as src:
        src.check_size(max_bytes)
        try:
            head = _parse_head(src, local=None)
            if head.msg is None:
                crc = _Crc32(head.head)
                src.stream(head.entries * ENTRY_SIZE, crc.update)
                ok: bool | None = src.read(_CRC.size) == _CRC.pack(crc.value)
                signer = head.header.get("signer")
                status = "local file, checksum ok" if ok else "local file, checksum MISMATCH"
        except DenyListError as exc:
            raise type(exc)(src.named(exc)) from None
    header = head.header
    if head.msg is not None:
        signer, ok = head.msg.kid, None
        status = "signature not checked (no trust store given)"
        if trust is not None:
            try:
                read_signed(source, trust, max_bytes=max_bytes)
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


def rebuild(
    files: Iterable[str | Path],
    trust: TrustStore,
    *,
    kind: str,
    scope: str,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    skipped: dict[Path, str] | None = None,
) -> DenyList:
    """The newest ``kind`` list for ``scope`` that the signed ``files`` (snapshots and deltas a
    gate applied before, in any order) still yield: the newest snapshot that verifies, then each
    delta that follows it, in version order, as far as the chain goes.

    Files that do not verify or cannot be read are passed over (with their reason in ``skipped``,
    if given), and so are files for other lists. Only the list being built and one update are in
    memory at a time: the first pass reads each file's header alone. Raises ``SequenceError`` when
    no snapshot of this kind and scope verifies.
    """
    _check_kind_scope(kind, scope)
    refused: dict[Path, str] = {} if skipped is None else skipped
    snapshots: list[tuple[int, Path]] = []
    deltas: dict[int, list[Path]] = {}
    count = 0
    for name in files:
        path, count = Path(name), count + 1
        try:
            header = _signed_header(path, trust, max_bytes)
        except (DenyListError, OSError) as exc:
            refused[path] = str(exc)
            continue
        if (header["kind"], header["scope"]) != (kind, scope):
            continue
        if header["type"] == SNAPSHOT:
            snapshots.append((header["version"], path))
        else:
            deltas.setdefault(header["base"], []).append(path)

    def read(path: Path) -> DenyList | Delta | None:
        try:
            update = read_signed(path, trust, max_bytes=max_bytes)
        except (DenyListError, OSError) as exc:  # damaged, or changed since the first pass
            refused[path] = str(exc)
            return None
        if (update.kind, update.scope) != (kind, scope):
            refused[path] = "changed while the list was rebuilt"
            return None
        return update

    current: DenyList | None = None
    for _, path in sorted(snapshots, key=lambda item: -item[0]):  # newest first
        update = read(path)
        if isinstance(update, DenyList):
            current = update
            break
    if current is None:
        why = f"; {len(refused)} refused, e.g. {next(iter(refused.values()))}" if refused else ""
        raise SequenceError(
            f"no {kind} snapshot for scope {scope!r} verifies among {count} file(s){why}"
        )
    followed = True
    while followed:
        followed = False
        for path in deltas.pop(current.version, ()):
            update = read(path)
            if isinstance(update, Delta) and update.base == current.version:
                current, update = current.apply(update), None  # the old list and delta go
                followed = True
                break
            if update is not None:
                refused[path] = "changed while the list was rebuilt"
    return current


class LiveDenyList:
    """The gate's current list for one kind and scope: lookups never wait, updates swap atomically.

    >>> live = LiveDenyList("/var/lib/passgate/revoked-acme.pgdl", kind="revoked", scope="acme")
    >>> live.apply_signed(delta_bytes, trust)        # doctest: +SKIP
    >>> pass_id in live.current                      # doctest: +SKIP

    A reader takes ``live.current`` once per decision; ``apply_signed`` verifies, writes the new
    list's file beside the old one (a step at a time, never a second list in memory), maps it, then
    swaps one reference. The list at ``path`` is mapped, not read (``DenyList.map``). Without a file
    the holder starts from ``DenyList.empty`` (version 0, infinitely old: the stale-list policy
    rules). A damaged file raises ``CorruptFileError``: the caller sets it aside and starts empty,
    or from ``initial``, a list it recovered (``rebuild``), which is saved to ``path`` at once.
    """

    def __init__(
        self, path: str | Path, *, kind: str, scope: str, initial: DenyList | None = None
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if initial is not None:
            current = initial
        elif self.path.exists():
            current = DenyList.map(self.path)
        else:
            current = DenyList.empty(kind, scope)
        if (current.kind, current.scope) != (kind, scope):
            where = "the initial list is" if initial is not None else f"{self.path} holds"
            raise MismatchError(
                f"{where} {current.kind} list {current.scope!r}, not {kind} list {scope!r}"
            )
        if initial is not None:
            initial.save(self.path)
        self._current = current

    @property
    def current(self) -> DenyList:
        """The list in force now (immutable; keep the reference for one whole decision)."""
        return self._current

    def __contains__(self, pass_id: bytes) -> bool:
        return pass_id in self._current

    def apply_signed(
        self, source: bytes | str | Path, trust: TrustStore, *, max_bytes: int | None = None
    ) -> DenyList:
        """Verify and apply a signed delta or a newer snapshot; on any error nothing changes.

        Returns the new current list, mapped from ``path``. Raises a ``DenyListError``
        (``SequenceError`` for a delta that does not follow, or a snapshot that is not newer:
        replaying an old one is refused; ``TooLargeError`` for a file over ``max_bytes``).

        A snapshot goes from ``source`` to the new file a step at a time, its digest checked
        before the file replaces the old one; a delta (small) is read, then merged into the file.
        """
        with _signed(source, trust, max_bytes) as (src, head, key):
            if head.header["type"] == SNAPSHOT:
                return self._copy_snapshot(src, head, key.kid)
            update = _received(src, head, key.kid)
        return self.apply(update)

    def apply(self, update: DenyList | Delta) -> DenyList:
        """Apply an update ``read_signed`` already verified (same checks and errors as
        ``apply_signed``); returns the new current list: a delta's mapped from ``path``, a
        snapshot as given (saved to ``path``)."""
        with self._lock:
            if isinstance(update, Delta):
                new = self._current.apply_to_file(update, self.path)
            else:
                self._check_newer(update.kind, update.scope, update.version)
                update.save(self.path)
                new = update
            self._current = new
        return new

    def _copy_snapshot(self, src: _Input, head: _Head, signer: bytes) -> DenyList:
        """A verified snapshot's data copied to the new file a step at a time, its digest computed
        on the way: the file replaces the old one only once the digest matched."""
        header = head.header
        digest = _sha256()

        def steps() -> Iterator[np.ndarray]:
            for step in src.steps(head.entries):
                digest.update(step.data)
                yield step
            if digest.digest() != header["digest"]:
                raise SignatureError(_TAMPERED)

        with self._lock:
            self._check_newer(header["kind"], header["scope"], header["version"])
            local = _local_header(header["kind"], header["scope"], header["version"],
                                  header["issued_at"], head.entries, signer)
            data = steps()
            try:
                new = _save_steps(self.path, local, data)
            except FormatError:
                for _ in data:  # out of order because tampered with: say so (SignatureError)
                    pass
                raise
            self._current = new
        return new

    def _check_newer(self, kind: str, scope: str, version: int) -> None:
        current = self._current
        if (kind, scope) != (current.kind, current.scope):
            raise MismatchError(f"snapshot is for {kind} list {scope!r}, not {current.kind} list "
                                f"{current.scope!r}")
        if version <= current.version:  # the epoch is in the high bits
            raise SequenceError(f"snapshot version {describe_version(version)} is not newer than "
                                f"{describe_version(current.version)}")


# --- encoding ------------------------------------------------------------------------------


def _check_kind_scope(kind: object, scope: object) -> None:
    if kind not in KINDS:
        raise FormatError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(scope, str):
        raise FormatError("scope must be a string")


def _check_meta(kind: object, scope: object, version: object, issued_at: object) -> None:
    _check_kind_scope(kind, scope)
    for name, value in (("version", version), ("issued_at", issued_at)):
        if type(value) is not int or value < 0:
            raise FormatError(f"{name} must be a non-negative integer")
    if version > MAX_VERSION:  # type: ignore[operator]
        raise FormatError(f"version {version} is beyond {MAX_VERSION} (what gates and hubs carry)")


def _little_endian(keys: np.ndarray) -> memoryview:
    return keys.astype(_LE, copy=False).data


def _local_header(kind: str, scope: str, version: int, issued_at: int, count: int,
                  signer: bytes | None) -> dict[str, Any]:
    return {"fmt": FORMAT, "type": LOCAL, "hash": HASH, "kind": kind, "scope": scope,
            "version": version, "issued_at": issued_at, "count": count, "signer": signer}


def _head(envelope: bytes) -> bytes:
    pad = -(_PREFIX.size + len(envelope)) % ENTRY_SIZE
    return _PREFIX.pack(MAGIC, len(envelope)) + envelope + bytes(pad)


def _signed_parts(
    header: dict[str, Any], arrays: list[memoryview], private_key: PrivateKey
) -> list[bytes | memoryview]:
    digest = _sha256()
    for array in arrays:
        digest.update(array)
    header["digest"] = digest.digest()
    envelope = cose.sign1(cbor2.dumps(header), private_key, kid=key_id(private_key),
                          external_aad=AAD)
    return [_head(envelope), *arrays]


def atomic_write(path: str | Path, parts: Iterable[bytes | bytearray | memoryview]) -> None:
    """Write, fsync, rename over ``path``, fsync the directory (one writer per path).

    Also for publishing signed files into a directory a web server is serving: a client never
    downloads half a file.
    """
    with _replacing(Path(path)) as f:
        for part in parts:
            f.write(part)


@contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    """A new file for ``path``, written as ``NAME.partial`` (readable too, so it can be mapped);
    when the block ends: fsync, rename over ``path``, fsync of the directory. An error on the way
    removes the partial file and leaves ``path`` as it was."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink()  # it exists: the rename is the last step that can fail
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _save_steps(path: Path, header: dict[str, Any], steps: Iterable[np.ndarray],
                buckets: _Buckets | None = None) -> DenyList:
    """Write the local file of ``header["count"]`` entries that arrive in ``steps`` (like
    ``atomic_write``) and map it. Each step must follow the one before it; its checksum and bucket
    index (unless ``buckets`` is that index already) are computed as it passes, so the entries are
    never all in anonymous memory nor read back. The file is mapped before it replaces ``path``:
    if it cannot be, nothing changed. Mapping what was just written reads the page cache, not the
    storage, so it is not checked again (a write error shows in fsync; later rot, in the checksum
    at the next ``map``)."""
    head = _head(cbor2.dumps(header))
    crc, build = _Crc32(head), buckets is None
    index = _Buckets(header["count"]) if buckets is None else buckets
    with _replacing(path) as f, _Flusher(f) as flusher:
        out = _Blocks(f, flusher)
        out.write(memoryview(head))
        last, entries = -1, 0
        for step in steps:
            if not len(step):
                continue
            if not _follows(step, last):
                raise FormatError("entries are not sorted and unique")
            last, entries = int(step[-1]), entries + len(step)
            data = _little_endian(step)
            crc.update(data)
            if build:
                index.add(step)
            out.write(data)
        if entries != header["count"]:
            raise FormatError(f"{entries} entries, not the {header['count']} expected")
        out.write(memoryview(_CRC.pack(crc.value)))
        out.close()
        f.flush()
        mapping, keys = _map(f.fileno(), len(head), header["count"])
    _advise_random(mapping)
    return DenyList._of_checked(keys, header, header["signer"], index)


class _Blocks:
    """Writes a file in whole ``_BLOCK``-sized blocks at offsets that are multiples of it: from
    such writes Linux (ext4 since 6.16) caches the file in 2 MiB pages and maps it with them,
    which spares lookups the TLB misses of 4 KiB pages (a tenth of a lookup at 50 M entries)."""

    def __init__(self, f: BinaryIO, flusher: _Flusher) -> None:
        self._f, self._flusher = f, flusher
        self._block = memoryview(bytearray(_BLOCK))
        self._used = 0

    def write(self, data: memoryview) -> None:
        data = data.cast("B")
        while len(data):
            size = min(len(data), _BLOCK - self._used)
            self._block[self._used : self._used + size] = data[:size]
            self._used, data = self._used + size, data[size:]
            if self._used == _BLOCK:
                self.close()

    def close(self) -> None:
        """Write what is gathered (the last block may be short)."""
        self._f.write(self._block[: self._used])
        self._flusher.wrote(self._used)
        self._used = 0


class _Flusher:
    """Flushes a file to storage from a thread while it is still being written (``wrote`` after
    each write), every ``_FLUSH`` bytes, so the storage works while the merge does and the fsync
    that ends the write has little left to wait for. A flush that fails fails the write when the
    block ends."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._unflushed = 0
        self._wanted = threading.Event()
        self._done = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="denylist-flush", daemon=True)

    def __enter__(self) -> _Flusher:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done = True
        self._wanted.set()
        self._thread.join()
        if self._error is not None and exc is None:
            raise self._error

    def wrote(self, size: int) -> None:
        self._unflushed += size
        if self._unflushed >= _FLUSH:
            self._unflushed = 0
            self._wanted.set()

    def _run(self) -> None:
        while self._wanted.wait() and not self._done:
            self._wanted.clear()
            try:
                os.fsync(self._f.fileno())
            except OSError as error:  # the next fsync on this file might not report it again
                self._error = error
                return


def _map(fd: int, offset: int, count: int) -> tuple[mmap.mmap, np.ndarray]:
    """``count`` entries at ``offset`` (a multiple of 8) of an open file, mapped read-only and
    shared with the page cache; the mapping is unmapped when the last array over it goes (and the
    descriptor Python's mmap keeps of the file is closed then)."""
    try:
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except OSError as exc:  # no address space left (a 32-bit gate), or a file system without mmap
        raise TooLargeError(f"the list cannot be mapped ({exc.strerror})") from None
    keys = np.frombuffer(mapping, dtype=_LE, count=count, offset=offset)
    return mapping, keys.astype(np.uint64, copy=False)


def _advise_random(mapping: mmap.mmap) -> None:
    """Lookups jump around the list: a page dropped under memory pressure is read back alone,
    without read-ahead."""
    if hasattr(mmap, "MADV_RANDOM"):
        mapping.madvise(mmap.MADV_RANDOM)


class _Buckets:
    """The bucket index of ``count`` sorted entries (``index[b]``: the first entry of bucket ``b``,
    the top bits of an entry; ~8-16 entries a bucket), filled as the entries pass in order, a step
    at a time, so that an index is built without reading a list twice."""

    def __init__(self, count: int) -> None:
        bits = max(0, min(24, count.bit_length() - 4))
        self.shift = 64 - bits
        self.index = np.empty((1 << bits) + 1, dtype=np.uint32)
        self.seen = 0  # entries added so far
        self._next = 0  # the first bucket whose first entry is not known yet

    @classmethod
    def moved(cls, old: np.ndarray, shift: int, count: int, adds: np.ndarray,
              removes: np.ndarray) -> _Buckets | None:
        """The index of ``count`` entries made from a list indexed by ``old`` (with ``shift``) by
        adding ``adds`` (none of them in it) and removing ``removes`` (all in it): from the old
        index and the changes alone, a step of buckets at a time, without reading an entry. None
        when the new size takes the list to another number of buckets."""
        new = cls(count)
        if new.shift != shift:
            return None
        # an entry added to (removed from) bucket b moves the first entry of every later bucket
        moved = [(changed >> np.uint64(shift)).astype(np.intp) + 1 for changed in (adds, removes)]
        total, size = 0, _READ // ENTRY_SIZE
        for start in range(0, len(old), size):
            stop = min(start + size, len(old))
            moves = np.zeros(stop - start, dtype=np.int64)
            for at, sign in zip(moved, (1, -1), strict=True):
                first, end = np.searchsorted(at, (start, stop))
                np.add.at(moves, at[first:end] - start, sign)
            np.cumsum(moves, out=moves)
            moves += total
            total = int(moves[-1])
            new.index[start:stop] = old[start:stop] + moves
        new.seen, new._next = count, len(new.index)
        return new

    def add(self, part: np.ndarray) -> None:
        if not len(part):
            return
        buckets = part >> np.uint64(self.shift)  # numpy gives 0 for a shift by 64 (one bucket)
        last = int(buckets[-1])
        if last >= self._next:
            wanted = np.arange(self._next, last + 1, dtype=np.uint64)
            self.index[self._next : last + 1] = self.seen + np.searchsorted(buckets, wanted)
            self._next = last + 1
        self.seen += len(part)

    def done(self) -> np.ndarray:
        """The index, once every entry was added: buckets after the last entry start at the end."""
        self.index[self._next :] = self.seen
        return self.index



# --- decoding ------------------------------------------------------------------------------


class _Input:
    """A file (opened here; ``OSError`` if it cannot be) or an in-memory buffer, read front to
    back. Messages about a file start with its name (``named``). Anything but a regular file (a
    FIFO, a device) is closed at once, unread (``irregular``): opening does not wait for a writer.
    """

    def __init__(self, source: bytes | bytearray | memoryview | str | Path) -> None:
        self.buf: memoryview | None = None
        self.file: io.BufferedReader | None = None
        self.name: str | None = None
        self.pos = 0
        self.irregular = False
        if isinstance(source, bytes | bytearray | memoryview):
            self.buf = memoryview(source).cast("B")
            self.size = len(self.buf)
            return
        self.name = str(source)
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            self.buf, self.size, self.irregular = memoryview(b""), 0, True
            return
        self.file = open(fd, "rb")  # noqa: SIM115 (closed by __exit__)
        self.size = info.st_size

    def __enter__(self) -> _Input:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.file is not None:
            self.file.close()

    def named(self, exc: BaseException) -> str:
        """The one-line message for ``exc``, with the file's name in front."""
        message = "not enough memory for this list" if isinstance(exc, MemoryError) else str(exc)
        return message if self.name is None else f"{self.name}: {message}"

    def check_size(self, max_bytes: int | None) -> None:
        """Refuse a source over ``max_bytes`` from its size alone (``fstat`` for a file)."""
        if max_bytes is not None and self.size > max_bytes:
            message = f"{self.size} bytes, more than the limit of {max_bytes}"
            raise TooLargeError(self.named(TooLargeError(message)))

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer at the end)."""
        if self.buf is not None:
            data = bytes(self.buf[self.pos : self.pos + size])
        else:
            assert self.file is not None
            data = self.file.read(size)
        self.pos += len(data)
        return data

    def entries(self, count: int, update: Callable[[memoryview], object], *,
                check_order: bool) -> np.ndarray:
        """The next ``count`` little-endian uint64 entries, each step given to ``update`` as it is
        read. ``check_order``: refuse them at the first step that is not strictly ascending."""
        if self.buf is not None:
            data = np.frombuffer(self.buf, dtype=_LE, count=count, offset=self.pos)
            if not self.buf.readonly:
                data = data.copy()  # the caller may change a bytearray later
            self.pos += count * ENTRY_SIZE
            update(data.data)
            if check_order:
                _check_keys(data, "entries")
            return data
        try:
            data = np.empty(count, dtype=_LE)  # pages are only taken as they are read into
        except MemoryError:
            raise TooLargeError(f"{count} entries do not fit in memory") from None
        view = data.data.cast("B")
        for start in range(0, len(view), _READ):
            step = view[start : start + _READ]
            self._fill(step)
            update(step)
            first = start // ENTRY_SIZE
            if check_order and not _ascending(data[max(first - 1, 0) : first + len(step) // 8]):
                raise FormatError("entries are not sorted and unique")
        return data

    def steps(self, count: int) -> Iterator[np.ndarray]:
        """The next ``count`` little-endian uint64 entries, 1 MiB at a time, unchecked: views of
        the buffer, or of one buffer each step of a file is read into (so a step is only valid
        until the next one is asked for)."""
        for chunk in self._chunks(count * ENTRY_SIZE):
            yield np.frombuffer(chunk, dtype=_LE)

    def stream(self, size: int, update: Callable[[memoryview], object]) -> None:
        """Give the next ``size`` bytes to ``update`` without keeping them."""
        for chunk in self._chunks(size):
            update(chunk)

    def _chunks(self, size: int) -> Iterator[memoryview]:
        """The next ``size`` bytes, 1 MiB at a time: slices of the buffer, or one buffer each step
        of a file is read into (valid until the next is asked for)."""
        if self.buf is not None:
            end = self.pos + size
            for start in range(self.pos, end, _READ):
                yield self.buf[start : min(start + _READ, end)]
            self.pos = end
            return
        view = memoryview(bytearray(min(size, _READ)))
        while size:
            step = view[: min(size, _READ)]
            self._fill(step)
            size -= len(step)
            yield step

    def _fill(self, view: memoryview) -> None:
        assert self.file is not None
        done = 0
        while done < len(view):
            got = self.file.readinto(view[done:])
            if not got:
                raise FormatError("the file ended early (did it change while it was read?)")
            done += got


class _Crc32:
    def __init__(self, start: bytes) -> None:
        self.value = zlib.crc32(start)

    def update(self, data: memoryview) -> None:
        self.value = zlib.crc32(data, self.value)


@dataclass(frozen=True)
class _Head:
    """What a file says about itself before its data: checked, and consistent with its size."""

    header: dict[str, Any]
    msg: cose.Sign1 | None  # the envelope of a signed file (not yet verified); None when local
    head: bytes  # magic, length, envelope and padding: where a local file's checksum starts
    entries: int  # entries in the data section, as the header states


def _parse_head(src: _Input, *, local: bool | None) -> _Head:
    """Read and check a file's head, and its size against the header's count; no data is read.

    ``local``: True expects an unsigned file with a CRC trailer, False a signed one, None either.
    Once the file is known to be local, any fault in it is a ``CorruptFileError``.
    """
    if src.irregular:
        raise FormatError("not a regular file")
    prefix = src.read(_PREFIX.size)
    length = _prefix_length(prefix)
    envelope = src.read(length)
    pad = src.read(-(_PREFIX.size + length) % ENTRY_SIZE)
    if len(envelope) != length or len(pad) != -(_PREFIX.size + length) % ENTRY_SIZE:
        raise FormatError("truncated deny list file (it ends in its header)")
    if any(pad):
        raise FormatError("bad padding after the header")
    _check_single_item(envelope)
    signed = envelope[:1] == b"\xd2"  # CBOR tag 18: COSE_Sign1
    if local and signed:
        raise FormatError("this is a signed network file: verify it with read_signed(..., trust)")
    if local is False and not signed:
        raise FormatError("this is a local (unsigned) list file, not a signed snapshot or delta")
    try:
        msg = _decode_envelope(envelope) if signed else None
        header = _decode_header(envelope if msg is None else msg.payload, None if signed else LOCAL)
        if signed and header["type"] == LOCAL:
            raise FormatError("a local list file cannot be signed")
        signer = header.get("signer")
        if not signed and signer is not None and not isinstance(signer, bytes):
            raise FormatError("bad 'signer' field")
        entries = header["adds"] + header["removes"] if header["type"] == DELTA else header["count"]
        if entries > MAX_ENTRIES:
            raise FormatError(f"header claims {entries} entries, more than {MAX_ENTRIES}")
        head = prefix + envelope + pad
        expected = len(head) + entries * ENTRY_SIZE + (0 if signed else _CRC.size)
        if src.size != expected:
            raise FormatError(f"header says {entries} entries, {expected} bytes; the file has "
                              f"{src.size} (truncated or damaged)")
    except FormatError as exc:
        if signed or isinstance(exc, CorruptFileError):
            raise
        raise CorruptFileError(str(exc)) from None
    return _Head(header, msg, head, entries)


def _check_single_item(envelope: bytes) -> None:
    """Refuse bytes after the envelope's one CBOR item: a longer length must not go unnoticed."""
    fp = io.BytesIO(envelope)
    try:
        cbor2.CBORDecoder(fp).decode()
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise FormatError(f"header is not CBOR ({type(exc).__name__})") from None
    if fp.tell() != len(envelope):
        raise FormatError("stray bytes after the header")


def _prefix_length(prefix: bytes) -> int:
    if len(prefix) != _PREFIX.size:
        raise FormatError("too short to be a deny list file")
    magic, length = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise FormatError("not a passgate deny list file (bad magic)")
    if not 0 < length <= MAX_ENVELOPE:
        raise FormatError(f"bad header length {length}")
    return length


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
    if kind_of_file == DELTA and header["version"] <= header["base"]:
        raise FormatError("a delta must go from version N to a later one")
    return header


def _decode_envelope(envelope: bytes) -> cose.Sign1:
    try:
        msg = cose.decode_sign1(envelope)
        _ = msg.alg  # raises for an alg that is unsupported or not in the protected header
    except cose.CoseError as exc:
        raise FormatError(f"bad signature envelope: {exc}") from None
    return msg


def _verify(head: _Head, trust: TrustStore) -> TrustedKey:
    """The trusted deny-list key of the list's scope that signed ``head`` within its window; the
    data is not checked here. A key trusted for anything else (a partner's pass key, the list key
    of another scope) is refused: trusting an issuer's passes never lets it rewrite a list."""
    msg = head.msg
    assert msg is not None
    if not trust.candidates(msg.kid):
        kid = msg.kid.hex() if msg.kid else "none"
        raise UntrustedKeyError(f"signed by a key not in the trust store (kid {kid})")
    signers = trust.signers(msg, AAD)
    if not signers:
        raise SignatureError("signature does not verify")
    scope = head.header["scope"]
    signer = next((k for k in signers if k.purpose is KeyPurpose.DENYLIST and k.scope == scope), None)
    if signer is None:
        raise UntrustedKeyError(f"key {signers[0].kid.hex()} may sign {signers[0].role()}, not the "
                                f"deny lists of scope {scope!r}")
    if signer.revoked is not None:
        raise UntrustedKeyError(f"key {signer.kid.hex()} is revoked")
    if not signer.accepts_issue_time(head.header["issued_at"]):
        raise UntrustedKeyError(f"key {signer.kid.hex()} was retired when this was signed")
    return signer


def _signed_header(source: bytes | str | Path, trust: TrustStore, max_bytes: int | None
                   ) -> dict[str, Any]:
    """The verified header of a signed file, its size checked; its data is not read."""
    with _Input(source) as src:
        src.check_size(max_bytes)
        try:
            head = _parse_head(src, local=False)
            _verify(head, trust)
        except DenyListError as exc:
            raise type(exc)(src.named(exc)) from None
    return head.header


@dataclass(frozen=True, slots=True)
class SignedHeader:
    """What a signed file says it is, its signature checked and its data not yet read."""

    kind: str
    scope: str
    version: int  # the version the file brings the list to
    is_delta: bool
    issued_at: int
    entries: int  # a snapshot's entries, or a delta's adds plus removes
    base: int | None = None  # the version a delta applies to


def read_header(source: bytes | str | Path, trust: TrustStore, *,
                max_bytes: int | None = None) -> SignedHeader:
    """The verified header of a signed snapshot or delta (bytes, or a file path), after checking
    its size against ``max_bytes`` and the header's count; the data is not read (so a giant or
    hostile file costs nothing). Raises the same errors as ``read_signed``, except a data digest
    mismatch."""
    header = _signed_header(source if isinstance(source, bytes) else Path(source), trust, max_bytes)
    is_delta = header["type"] == DELTA
    entries = header["adds"] + header["removes"] if is_delta else header["count"]
    return SignedHeader(kind=header["kind"], scope=header["scope"], version=header["version"],
                        is_delta=is_delta, issued_at=header["issued_at"], entries=entries,
                        base=header["base"] if is_delta else None)


def _build(header: dict[str, Any], data: np.ndarray, signer: bytes) -> DenyList | Delta:
    """The list or delta from a verified header and data of the size it states."""
    data = data.astype(np.uint64, copy=False)
    meta = {"kind": header["kind"], "scope": header["scope"], "issued_at": header["issued_at"]}
    if header["type"] == SNAPSHOT:
        return DenyList(data, version=header["version"], signer=signer, **meta)
    adds, removes = data[: header["adds"]], data[header["adds"] :]
    return Delta(base=header["base"], adds=adds, removes=removes, signer=signer, upto=header["version"],
                 **meta)


class _Merge:
    """(old − removes) ∪ adds, for a list and a delta: the new size, its entries a step (about
    1 MiB of the old list) at a time, and its bucket index."""

    def __init__(self, old: DenyList, adds: np.ndarray, removes: np.ndarray) -> None:
        keys = old.keys
        apos, rpos = old._find(adds), old._find(removes)  # where each would go in the old list
        if len(keys):
            last = len(keys) - 1
            listed = keys[np.minimum(rpos, last)] == removes
            removes, rpos = removes[listed], rpos[listed]
            fresh = keys[np.minimum(apos, last)] != adds
            adds, apos = adds[fresh], apos[fresh]
        else:
            removes, rpos = removes[:0], rpos[:0]
        self.old, self.adds, self.apos, self.removes, self.rpos = old, adds, apos, removes, rpos
        self.count = len(keys) - len(removes) + len(adds)

    def steps(self) -> Iterator[np.ndarray]:
        """The new entries in order: a step without changes is a view of the old list, the others
        new arrays of about its size."""
        old, adds, apos, rpos = self.old.keys, self.adds, self.apos, self.rpos
        size, a, r = _READ // ENTRY_SIZE, 0, 0
        for lo in range(0, len(old), size):
            hi = min(lo + size, len(old))
            # adds[a:a_end] go before old[hi] (the last step takes those after the end, too)
            a_end = len(adds) if hi == len(old) else int(np.searchsorted(apos, hi))
            r_end = int(np.searchsorted(rpos, hi))
            part = old[lo:hi]
            if a_end > a or r_end > r:
                gone, at = rpos[r:r_end] - lo, apos[a:a_end] - lo
                part = np.insert(np.delete(part, gone), at - np.searchsorted(gone, at), adds[a:a_end])
                a, r = a_end, r_end
            yield part
        if not len(old):
            yield adds

    def buckets(self) -> _Buckets | None:
        """The new bucket index, from the old one (None: built as the entries pass)."""
        old = self.old
        return _Buckets.moved(np.frombuffer(old._index, dtype=np.uint32), old._shift, self.count,
                              self.adds, self.removes)
