"""Fuzz the deny-list file format: only ``DenyListError``, and no unsigned list is ever accepted.

The first input byte picks the reader:

- 0: ``read_signed`` on bytes (the in-memory splitter);
- 1: ``inspect`` with and without a trust store (it decodes headers before any signature check);
- 2: the same bytes as a file: ``DenyList.load`` (local files, CRC; any refusal must be a
  ``CorruptFileError``) and ``read_signed`` on the path (the streaming file reader, a separate
  code path from the bytes one);
- 3: ``rebuild`` from a signed seed snapshot (v3) and the bytes as a second file.

Forgery oracle: a snapshot or delta that ``read_signed`` returns must equal, entry for entry,
one of the seeds the harness signed itself; a list ``rebuild`` returns must be the seed snapshot
or the seed snapshot with the seed delta applied.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from fuzz.common import ATTACKER_KEY, ED25519_KEY, ES256_KEY, Forgery, main, trust_store
from passgate.denylist import (
    CorruptFileError,
    Delta,
    DenyList,
    DenyListError,
    inspect,
    read_signed,
    rebuild,
    sign_delta,
    sign_snapshot,
)
from passgate.keys import KeyPurpose, TrustedKey

TRUST = trust_store()
# The same keys in the list role, each for the scope its seed lists carry (a list is accepted only
# from a deny-list key of its own scope).
TRUST.add(TrustedKey(ED25519_KEY.public_key(), purpose=KeyPurpose.DENYLIST, scope="acme"))
TRUST.add(TrustedKey(ES256_KEY.public_key(), purpose=KeyPurpose.DENYLIST, scope=""))
SIGNED, INSPECT, FILE, REBUILD = 0, 1, 2, 3
MODES = (SIGNED, INSPECT, FILE, REBUILD)
IDS = [hashlib.sha256(bytes([i])).digest()[:16] for i in range(12)]
# Anonymous in-memory files: each input is written over the first, nothing is left on disk.
_FD = os.memfd_create("passgate-fuzz-denylist")
_PATH = Path(f"/proc/self/fd/{_FD}")


def _signed_files() -> dict[str, bytes]:
    return {
        "snapshot-ed25519": sign_snapshot(ED25519_KEY, IDS[:5], kind="blocked", scope="acme",
                                          version=3, issued_at=1000),
        "snapshot-es256": sign_snapshot(ES256_KEY, IDS[:2], kind="revoked", scope="", version=1,
                                        issued_at=1000),
        "snapshot-empty": sign_snapshot(ED25519_KEY, [], kind="revoked", scope="acme", version=9,
                                        issued_at=1000),
        "delta-blocked": sign_delta(ED25519_KEY, kind="blocked", scope="acme", base=3,
                                    adds=IDS[5:8], removes=IDS[:2], issued_at=1001),
        "delta-revoked": sign_delta(ES256_KEY, kind="revoked", scope="", base=1, adds=IDS[8:],
                                    issued_at=1001),
    }


def fingerprint(update: DenyList | Delta) -> tuple[object, ...]:
    """Everything a gate takes from a signed file: metadata, signer and every entry."""
    if isinstance(update, DenyList):
        return ("snapshot", update.kind, update.scope, update.version, update.issued_at,
                update.signer, update.keys.tobytes())
    return ("delta", update.kind, update.scope, update.base, update.issued_at, update.signer,
            update.adds.tobytes(), update.removes.tobytes())


SEED_LISTS = {fingerprint(read_signed(data, TRUST)) for data in _signed_files().values()}
# rebuild's start: the blocked "acme" snapshot v3, as a second file beside the input
_SNAPSHOT_FD = os.memfd_create("passgate-fuzz-denylist-snapshot")
os.pwrite(_SNAPSHOT_FD, _signed_files()["snapshot-ed25519"], 0)
_SNAPSHOT_PATH = Path(f"/proc/self/fd/{_SNAPSHOT_FD}")


def _rebuilt_lists() -> set[tuple[object, ...]]:
    """What ``rebuild`` may return: the seed snapshot, or the seed snapshot after the seed delta."""
    files = _signed_files()
    start = read_signed(files["snapshot-ed25519"], TRUST)
    step = read_signed(files["delta-blocked"], TRUST)
    assert isinstance(start, DenyList) and isinstance(step, Delta)
    return {fingerprint(start), fingerprint(start.apply(step))}


REBUILT_LISTS = _rebuilt_lists()


def _local_file() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "local.pgdl"
        DenyList.from_ids(IDS[:4], kind="blocked", scope="acme", version=4, issued_at=1002).save(path)
        return path.read_bytes()


def seeds() -> dict[str, bytes]:
    """Seed inputs: every signed file through every reader, a local file, an untrusted signer."""
    files = {**_signed_files(), "local": _local_file(),
             "untrusted": sign_snapshot(ATTACKER_KEY, IDS[:3], kind="blocked", scope="acme",
                                        version=4, issued_at=1000)}
    return {f"{mode}-{name}": bytes([mode]) + data for name, data in files.items() for mode in MODES}


def _check_signed(source: bytes | Path) -> None:
    try:
        update = read_signed(source, TRUST)
    except DenyListError:
        return
    if fingerprint(update) not in SEED_LISTS:
        raise Forgery(f"deny list verified without a valid signature: {fingerprint(update)!r:.300}")


def test_one_input(data: bytes) -> None:
    """One input through one reader; only ``DenyListError`` may escape."""
    if not data:
        return
    mode, rest = data[0] % len(MODES), data[1:]
    if mode == SIGNED:
        _check_signed(rest)
    elif mode == INSPECT:
        for trust in (None, TRUST):
            try:
                summary = inspect(rest, trust)
            except DenyListError:
                continue
            assert summary["ok"] in (True, False, None)
            if summary["ok"] and trust is not None:  # "signature valid" must hold up to the oracle
                _check_signed(rest)
    else:
        os.ftruncate(_FD, 0)
        os.pwrite(_FD, rest, 0)
        if mode == REBUILD:
            _check_rebuild()
            return
        try:
            loaded = DenyList.load(_PATH)
        except CorruptFileError:  # any damage to a local file is this one class
            pass
        else:
            assert np.all(loaded.keys[1:] > loaded.keys[:-1])
        _check_signed(_PATH)


def _check_rebuild() -> None:
    skipped: dict[Path, str] = {}
    rebuilt = rebuild([_PATH, _SNAPSHOT_PATH], TRUST, kind="blocked", scope="acme",
                      skipped=skipped)
    if fingerprint(rebuilt) not in REBUILT_LISTS:
        raise Forgery(f"rebuild took a list without a valid signature: {fingerprint(rebuilt)!r:.300}")
    assert _SNAPSHOT_PATH not in skipped


if __name__ == "__main__":
    main(test_one_input)
