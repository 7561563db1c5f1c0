"""Deny lists: membership, signed snapshots and deltas, refusals, atomic swap and atomic save."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import passgate.denylist as denylist
from passgate import cose
from passgate.denylist import (
    AAD,
    CorruptFileError,
    Delta,
    DenyList,
    DenyListError,
    FormatError,
    LiveDenyList,
    MismatchError,
    SequenceError,
    SignatureError,
    UntrustedKeyError,
    entry_key,
    inspect,
    read_header,
    read_signed,
    sign_delta,
    sign_snapshot,
)
from passgate.keys import TrustStore, generate_private_key, key_id
from tests.helpers import examples

KEY = generate_private_key()
TRUST = TrustStore()  # KEY signs these lists (a denylist key per scope the tests use)
TRUST.add(KEY.public_key(), purpose="denylist", scope="acme")
IDS = [hashlib.sha256(i.to_bytes(4, "big")).digest()[:16] for i in range(300)]
pass_ids = st.binary(min_size=16, max_size=16)
# A small pool so that drawn lists, adds and removes overlap often.
pooled_ids = st.sampled_from(IDS[:40]) | pass_ids


def snapshot(ids: list[bytes], version: int = 1, kind: str = "blocked") -> bytes:
    return sign_snapshot(KEY, ids, kind=kind, scope="acme", version=version, issued_at=1000)


def members(dl: DenyList, probes: list[bytes]) -> set[bytes]:
    return {p for p in probes if p in dl}


# --- membership against a Python set ------------------------------------------------------


@given(listed=st.lists(pooled_ids, max_size=60), probes=st.lists(pooled_ids, max_size=60))
def test_membership_matches_a_set(listed: list[bytes], probes: list[bytes]) -> None:
    dl = DenyList.from_ids(listed)
    oracle = set(listed)
    assert len(dl) == len(oracle)
    assert members(dl, probes + listed) == oracle & set(probes + listed)


@given(first=st.lists(pooled_ids, max_size=30), second=st.lists(pooled_ids, max_size=30),
       probes=st.lists(pooled_ids, min_size=1, max_size=30))
def test_two_lists_asked_in_turn_answer_each_for_its_own(first: list[bytes], second: list[bytes],
                                                          probes: list[bytes]) -> None:
    """As a scan asks: the same pass in the revoked list, then the blocked one (its key is hashed
    once); other passes between; a buffer changed in place between two questions."""
    lists = DenyList.from_ids(first), DenyList.from_ids(second)
    for probe in probes:
        assert [probe in dl for dl in lists] == [probe in set(ids) for ids in (first, second)]
    if first:
        buffer = bytearray(first[0])
        assert buffer in lists[0]
        buffer[:] = b"\xfe" * 17  # never listed: no pooled id has 17 bytes
        assert buffer not in lists[0]


@given(
    listed=st.lists(pooled_ids, max_size=60),
    adds=st.lists(pooled_ids, max_size=30),
    removes=st.lists(pooled_ids, max_size=30),
)
def test_delta_matches_set_semantics(
    listed: list[bytes], adds: list[bytes], removes: list[bytes]
) -> None:
    removes = [r for r in removes if r not in set(adds)]
    old = DenyList.from_ids(listed, kind="blocked", scope="s", version=4)
    delta = Delta.from_ids(kind="blocked", scope="s", base=4, adds=adds, removes=removes)
    new = old.apply(delta)
    oracle = (set(listed) - set(removes)) | set(adds)
    probes = listed + adds + removes + IDS[:40]
    assert members(new, probes) == oracle
    assert len(new) == len(oracle)
    assert (new.version, new.kind, new.scope) == (5, "blocked", "s")
    assert members(old, probes) == set(listed)  # the old list is untouched


# entries a list and its delta share, the extremes among them (an add after the last entry)
KEY_POOL = [0, 1, 2**64 - 2, 2**64 - 1,
            *np.random.default_rng(3).integers(0, 2**64, 56, dtype=np.uint64).tolist()]
pooled_keys = st.sampled_from(KEY_POOL) | st.integers(0, 2**64 - 1)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=examples(40, 100), deadline=None)
@given(
    size=st.integers(0, 300),
    seed=st.integers(0, 2**16),
    pooled=st.lists(st.booleans(), min_size=len(KEY_POOL), max_size=len(KEY_POOL)),
    adds=st.lists(pooled_keys, max_size=40),
    removes=st.lists(pooled_keys, max_size=40),
    step=st.sampled_from([8, 24, 64, 1 << 20]),
)
def test_a_delta_merged_into_the_file_is_the_list_apply_builds(
    size: int, seed: int, pooled: list[bool], adds: list[int], removes: list[int], step: int
) -> None:
    """The gate's path (merged a step at a time from the mapped list into the new file, the index
    moved from the old one) against the in-memory ``apply`` and a set: the same entries, the same
    index, the same file to the byte. Lists of up to 300 random entries (1 to 32 buckets) and
    about half the pool, which the delta's adds and removes draw from; steps of 1, 3 and 8
    entries (and buckets) cross every boundary. The old list, whose file was replaced, still
    holds its version."""
    listed = np.random.default_rng(seed).integers(0, 2**64, size, dtype=np.uint64).tolist()
    listed += [key for key, chosen in zip(KEY_POOL, pooled, strict=True) if chosen]
    removes = [r for r in removes if r not in set(adds)]

    def keys(values: list[int]) -> np.ndarray:
        return np.unique(np.array(values, dtype=np.uint64))

    old = DenyList(keys(listed), kind="blocked", scope="s", version=4, issued_at=2)
    delta = Delta("blocked", "s", 4, 3, keys(adds), keys(removes))
    oracle = sorted((set(listed) - set(removes)) | set(adds))
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(denylist, "_READ", step)
        patch.setattr(denylist, "_BLOCK", 40)  # blocks written end within an entry
        path, expected = Path(tmp) / "l.pgdl", Path(tmp) / "expected.pgdl"
        old.save(path)
        mapped = DenyList.map(path)
        assert np.array_equal(mapped._find(delta.adds), np.searchsorted(mapped.keys, delta.adds))
        in_memory = old.apply(delta)
        in_memory.save(expected)
        merged = mapped.apply_to_file(delta, path)
        assert merged.keys.tolist() == oracle == in_memory.keys.tolist()
        assert (merged.version, merged.issued_at, merged._shift) == (5, 3, in_memory._shift)
        assert bytes(merged._index) == bytes(in_memory._index)
        assert path.read_bytes() == expected.read_bytes()
        assert mapped.keys.tolist() == sorted(set(listed)) and mapped.version == 4
        assert DenyList.map(path).same_entries(in_memory)
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["expected.pgdl", "l.pgdl"]


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=40)
@given(old=st.lists(pooled_ids, max_size=50), new=st.lists(pooled_ids, max_size=50))
def test_between_then_signed_round_trip(old: list[bytes], new: list[bytes]) -> None:
    a = DenyList.from_ids(old, kind="blocked", scope="acme", version=7, issued_at=5)
    b = DenyList.from_ids(new, kind="blocked", scope="acme", version=8, issued_at=6)
    delta = read_signed(Delta.between(a, b).to_signed(KEY), TRUST)
    assert isinstance(delta, Delta)
    result = a.apply(delta)
    assert result.same_entries(b)
    assert (result.version, result.issued_at, result.signer) == (8, 6, key_id(KEY))


@settings(max_examples=25)
@given(listed=st.lists(pass_ids, max_size=50))
def test_save_load_round_trip(listed: list[bytes]) -> None:
    dl = DenyList.from_ids(listed, kind="revoked", scope="ü-scope", version=3, issued_at=99)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.pgdl"
        dl.save(path)
        loaded = DenyList.load(path)
    assert loaded.same_entries(dl)
    assert (loaded.kind, loaded.scope, loaded.version, loaded.issued_at) == (
        "revoked", "ü-scope", 3, 99
    )
    assert members(loaded, listed) == set(listed)


def test_large_list_and_bucketed_lookup() -> None:
    rng = np.random.default_rng(5)
    ids = [bytes(row) for row in rng.integers(0, 256, (50_000, 16), dtype=np.uint8)]
    dl = DenyList.from_ids(ids[:25_000])
    assert all(pass_id in dl for pass_id in ids[:25_000])
    assert not any(pass_id in dl for pass_id in ids[25_000:])


def test_entry_is_truncated_sha256_not_the_id() -> None:
    dl = DenyList.from_ids([IDS[1]])
    assert dl.keys.tolist() == [entry_key(IDS[1])]
    assert IDS[1] not in DenyList(np.array([1, 2], np.uint64), kind="revoked", scope="",
                                  version=1, issued_at=0)


def test_from_ids_refuses_non_pass_ids() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        DenyList.from_ids([IDS[0].hex()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="16 bytes"):
        DenyList.from_ids([b"short"])


@pytest.mark.parametrize("at", [0, 65_535, 65_536, 99_998])
def test_unsorted_or_duplicate_entries_are_refused(at: int) -> None:
    keys = np.arange(100_000, dtype=np.uint64)
    swapped, duplicated = keys.copy(), keys.copy()
    swapped[[at, at + 1]] = swapped[[at + 1, at]]
    duplicated[at + 1] = duplicated[at]
    for bad in (swapped, duplicated):
        with pytest.raises(FormatError, match="sorted"):
            DenyList(bad, kind="revoked", scope="", version=1, issued_at=0)
    assert len(DenyList(keys, kind="revoked", scope="", version=1, issued_at=0)) == 100_000


def test_empty_list_is_version_zero_and_ancient() -> None:
    dl = DenyList.empty("revoked", "acme")
    assert (len(dl), dl.version, IDS[0] in dl) == (0, 0, False)
    assert dl.age(now=1000) == 1000


def test_age_is_seconds_since_signing_and_grows_with_time() -> None:
    dl = DenyList.from_ids(IDS[:3], kind="blocked", scope="acme", version=4, issued_at=5_000)
    assert (dl.age(now=5_000), dl.age(now=5_900), dl.age(now=4_000)) == (0, 900, -1_000)


@pytest.mark.parametrize("bad", [[2, 1], [1, 1], [3, 2, 1]])
def test_the_shortest_unsorted_lists_are_refused(bad: list[int]) -> None:
    with pytest.raises(FormatError, match="sorted and unique"):
        DenyList(np.array(bad, dtype=np.uint64), kind="blocked", scope="", version=1, issued_at=0)
    assert len(DenyList(np.array(sorted(set(bad)), dtype=np.uint64), kind="blocked", scope="",
                        version=1, issued_at=0)) == len(set(bad))


# --- signed files --------------------------------------------------------------------------


def test_signed_snapshot_round_trip_and_inspect(tmp_path: Path) -> None:
    data = snapshot(IDS[:10], version=9, kind="revoked")
    dl = read_signed(data, TRUST)
    assert isinstance(dl, DenyList)
    assert (dl.kind, dl.scope, dl.version, dl.issued_at, len(dl)) == ("revoked", "acme", 9, 1000, 10)
    assert members(dl, IDS[:20]) == set(IDS[:10])
    path = tmp_path / "snap.pgdl"
    path.write_bytes(data)
    assert read_signed(path, TRUST).same_entries(dl)  # type: ignore[union-attr]
    summary = inspect(path, TRUST)
    assert summary["status"] == "signature valid" and summary["ok"] is True
    assert summary["entries"] == 10 and summary["signer"] == key_id(KEY).hex()
    assert inspect(path)["ok"] is None  # nothing checked without a trust store


def test_unknown_key_is_refused() -> None:
    other = generate_private_key()
    data = sign_snapshot(other, IDS[:3], kind="revoked", scope="acme", version=1)
    with pytest.raises(UntrustedKeyError, match="not in the trust store"):
        read_signed(data, TRUST)


def test_retired_key_is_refused_for_lists_signed_after_retirement() -> None:
    trust = TrustStore()
    trust.add(KEY.public_key(), retired=datetime(2026, 1, 1, tzinfo=UTC), purpose="denylist",
              scope="acme")
    before = sign_snapshot(KEY, IDS[:3], kind="revoked", scope="acme", version=1, issued_at=10)
    assert len(read_signed(before, trust)) == 3  # type: ignore[arg-type]
    after = sign_snapshot(KEY, IDS[:3], kind="revoked", scope="acme", version=1,
                          issued_at=int(datetime(2026, 2, 1, tzinfo=UTC).timestamp()))
    with pytest.raises(UntrustedKeyError, match="retired"):
        read_signed(after, trust)


def test_signature_without_the_deny_list_aad_is_refused() -> None:
    """A COSE_Sign1 the key made for something else (no AAD) never verifies as a deny list."""
    data = snapshot(IDS[:3])
    length = int.from_bytes(data[4:8], "little")
    msg = cose.decode_sign1(data[8 : 8 + length])
    resigned = cose.sign1(msg.payload, KEY, kid=key_id(KEY))
    assert cose.verify_sign1(resigned, KEY.public_key()) == msg.payload
    forged = data[:4] + len(resigned).to_bytes(4, "little") + resigned
    forged += bytes(-len(forged) % 8) + data[8 + length + (-(8 + length) % 8) :]
    with pytest.raises(SignatureError):
        read_signed(forged, TRUST)
    assert read_signed(data, TRUST)  # the untouched file still verifies with AAD


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: snapshot(IDS[:6]), id="snapshot"),
        pytest.param(
            lambda: sign_delta(KEY, kind="blocked", scope="acme", base=1, adds=IDS[6:9],
                               removes=IDS[:2], issued_at=5),
            id="delta",
        ),
    ],
)
def test_every_tampered_byte_is_refused(data) -> None:  # type: ignore[no-untyped-def]
    original = data()
    assert read_signed(original, TRUST)
    for i in range(len(original)):
        for flip in (0x01, 0x80):
            tampered = bytearray(original)
            tampered[i] ^= flip
            with pytest.raises(DenyListError):
                read_signed(bytes(tampered), TRUST)
    for cut in (0, 7, len(original) // 2, len(original) - 8, len(original) - 1):
        with pytest.raises(DenyListError):
            read_signed(original[:cut], TRUST)
    with pytest.raises(DenyListError):
        read_signed(original + bytes(8), TRUST)


def test_every_tampered_byte_of_a_local_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "local.pgdl"
    DenyList.from_ids(IDS[:6], kind="blocked", scope="acme", version=2).save(path)
    original = path.read_bytes()
    for i in range(len(original)):
        tampered = bytearray(original)
        tampered[i] ^= 0x10
        path.write_bytes(tampered)
        with pytest.raises(CorruptFileError):
            DenyList.load(path)
    path.write_bytes(original)
    assert len(DenyList.load(path)) == 6


@given(st.binary(max_size=200))
def test_garbage_only_raises_deny_list_errors(data: bytes) -> None:
    for candidate in (data, b"PGDL" + data):
        with pytest.raises(DenyListError):
            read_signed(candidate, TRUST)


def test_local_and_signed_files_are_not_interchangeable(tmp_path: Path) -> None:
    local = tmp_path / "local.pgdl"
    DenyList.from_ids(IDS[:3]).save(local)
    with pytest.raises(FormatError, match="local"):
        read_signed(local, TRUST)
    signed = tmp_path / "signed.pgdl"
    signed.write_bytes(snapshot(IDS[:3]))
    with pytest.raises(CorruptFileError, match="read_signed"):  # not the gate's own copy: damage
        DenyList.load(signed)


def test_local_file_with_trailing_garbage_header_count_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "local.pgdl"
    DenyList.from_ids(IDS[:3]).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:-4] + bytes(8) + data[-4:])
    with pytest.raises(CorruptFileError, match="header says 3 entries"):
        DenyList.load(path)


# --- deltas that do not fit ------------------------------------------------------------------


def test_delta_refusals_leave_the_list_unchanged(tmp_path: Path) -> None:
    live = LiveDenyList(tmp_path / "blocked.pgdl", kind="blocked", scope="acme")
    live.apply_signed(snapshot(IDS[:5], version=3), TRUST)
    on_disk = (tmp_path / "blocked.pgdl").read_bytes()
    before = live.current

    def refused(data: bytes, error: type[DenyListError], match: str) -> None:
        with pytest.raises(error, match=match):
            live.apply_signed(data, TRUST)
        assert live.current is before
        assert (tmp_path / "blocked.pgdl").read_bytes() == on_disk

    def delta(**kw: object) -> bytes:
        args = {"kind": "blocked", "scope": "acme", "base": 3, "adds": IDS[5:6], "issued_at": 9}
        return sign_delta(KEY, **{**args, **kw})  # type: ignore[arg-type]

    refused(delta(base=2), SequenceError, "does not follow version 3")
    refused(delta(base=4), SequenceError, "does not follow version 3")
    refused(delta(scope="other"), UntrustedKeyError, "not the deny lists of scope 'other'")
    refused(delta(kind="revoked"), MismatchError, "revoked")
    refused(snapshot(IDS[:1], version=3), SequenceError, "not newer")
    refused(snapshot(IDS[:1], version=2), SequenceError, "not newer")
    good = delta()
    refused(good[:-3] + bytes([good[-3] ^ 1]) + good[-2:], SignatureError, "digest")
    before = live.apply_signed(good, TRUST)
    on_disk = (tmp_path / "blocked.pgdl").read_bytes()
    assert before.version == 4 and live.current is before
    assert IDS[5] in live and IDS[5] in DenyList.load(tmp_path / "blocked.pgdl")
    refused(good, SequenceError, "does not follow version 4")  # a replayed delta


def test_newer_snapshot_replaces_the_list(tmp_path: Path) -> None:
    live = LiveDenyList(tmp_path / "b.pgdl", kind="blocked", scope="acme")
    live.apply_signed(snapshot(IDS[:5], version=3), TRUST)
    live.apply_signed(snapshot(IDS[10:12], version=9), TRUST)
    assert members(live.current, IDS[:20]) == set(IDS[10:12])
    reopened = LiveDenyList(tmp_path / "b.pgdl", kind="blocked", scope="acme")
    assert reopened.current.version == 9 and reopened.current.signer == key_id(KEY)
    with pytest.raises(MismatchError):
        LiveDenyList(tmp_path / "b.pgdl", kind="revoked", scope="acme")


def test_revoked_lists_are_permanent() -> None:
    with pytest.raises(FormatError, match="permanent"):
        Delta.from_ids(kind="revoked", scope="acme", base=1, removes=IDS[:1])
    old = DenyList.from_ids(IDS[:3], kind="revoked", scope="acme", version=1)
    new = DenyList.from_ids(IDS[1:3], kind="revoked", scope="acme", version=2)
    with pytest.raises(FormatError, match="permanent"):
        Delta.between(old, new)


def test_delta_cannot_add_and_remove_the_same_id() -> None:
    with pytest.raises(FormatError, match="both add and remove"):
        Delta.from_ids(kind="blocked", scope="acme", base=1, adds=IDS[:2], removes=IDS[1:3])


def signed_delta_header(base: int, version: int) -> bytes:
    header = {"fmt": 1, "type": "delta", "hash": "sha256/8", "kind": "blocked", "scope": "acme",
              "base": base, "version": version, "issued_at": 0, "adds": 0, "removes": 0,
              "digest": hashlib.sha256(b"").digest()}
    envelope = cose.sign1(cbor2.dumps(header), KEY, kid=key_id(KEY), external_aad=AAD)
    data = b"PGDL" + len(envelope).to_bytes(4, "little") + envelope
    return data + bytes(-len(data) % 8)


@pytest.mark.parametrize("version", [0, 1])
def test_signed_delta_header_must_go_to_a_later_version(version: int) -> None:
    with pytest.raises(FormatError, match="from version N to a later one"):
        read_signed(signed_delta_header(1, version), TRUST)
    with pytest.raises(FormatError, match="must go to a later one"):
        Delta("blocked", "acme", 1, 0, np.empty(0, np.uint64), np.empty(0, np.uint64), upto=version)


def test_a_compacted_delta_applies_to_its_base_only_and_brings_the_list_to_its_version() -> None:
    """Every change from version 2 to 7 at once: read back from its signed file, applied to the list
    at 2 it gives the list at 7; the list at 3 refuses it, as any delta that does not follow."""
    at_2 = DenyList.from_ids(IDS[:50], kind="blocked", scope="acme", version=2, issued_at=5)
    at_7 = DenyList.from_ids(IDS[20:80], kind="blocked", scope="acme", version=7, issued_at=9)
    compacted = Delta.between(at_2, at_7)
    assert (compacted.base, compacted.version, compacted.upto) == (2, 7, 7)
    read = read_signed(compacted.to_signed(KEY), TRUST)
    assert isinstance(read, Delta) and (read.base, read.version) == (2, 7)
    assert read_header(compacted.to_signed(KEY), TRUST).base == 2
    after = at_2.apply(read)
    assert after.same_entries(at_7) and (after.version, after.issued_at) == (7, 9)
    with pytest.raises(SequenceError, match="does not follow"):
        at_2.apply(Delta.between(at_2, at_7)).apply(read)
    with pytest.raises(SequenceError):
        Delta.between(at_7, at_2)
    assert read_signed(signed_delta_header(1, 2), TRUST).upto is None  # type: ignore[union-attr]
    assert Delta.from_ids(kind="blocked", scope="acme", base=1, version=2).upto is None  # one spelling


# --- atomic swap and atomic save --------------------------------------------------------------


def test_lookups_during_swaps_see_one_whole_version(tmp_path: Path) -> None:
    """Even versions hold IDS[:100], odd ones IDS[100:200]; a reader checks one version whole."""
    live = LiveDenyList(tmp_path / "b.pgdl", kind="blocked", scope="acme")
    live.apply_signed(snapshot(IDS[:100], version=2), TRUST)
    expected = {0: set(IDS[:100]), 1: set(IDS[100:200])}
    deltas = []
    for base in range(2, 22):
        old, new = (IDS[:100], IDS[100:200]) if base % 2 == 0 else (IDS[100:200], IDS[:100])
        deltas.append(sign_delta(KEY, kind="blocked", scope="acme", base=base, adds=new,
                                 removes=old, issued_at=base))
    stop = threading.Event()
    errors: list[str] = []
    checked = [0]

    def reader() -> None:
        while not stop.is_set():
            dl = live.current
            seen = members(dl, IDS[:220])
            if seen != expected[dl.version % 2]:
                errors.append(f"version {dl.version} showed a mix")
            checked[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for data in deltas:
            live.apply_signed(data, TRUST)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors
    assert live.current.version == 22 and checked[0] > 0


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from passgate.denylist import DenyList

    rng = np.random.default_rng(7)
    lists = [np.unique(rng.integers(0, 2**64, n, dtype=np.uint64)) for n in (200_000, 150_000)]
    for version in range(1, 100_000):
        keys = lists[version % 2]
        DenyList(keys, kind="blocked", scope="crash", version=version, issued_at=version).save(
            sys.argv[1]
        )
        print(version, flush=True)
    """
)


def test_killed_writer_leaves_the_old_or_the_new_version(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    lists = [np.unique(rng.integers(0, 2**64, n, dtype=np.uint64)) for n in (200_000, 150_000)]
    path = tmp_path / "crash.pgdl"
    chooser = random.Random(1)
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # wait until at least one save completed
        assert first.strip().isdigit()
        threading.Event().wait(chooser.uniform(0, 0.05))
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
        last = int(([first, *rest.split()])[-1])
        loaded = DenyList.load(path)
        assert loaded.version in (last, last + 1)
        assert np.array_equal(loaded.keys, lists[loaded.version % 2])
        assert loaded.issued_at == loaded.version
