"""Deny-list files that are damaged, truncated, hostile or huge: refused with the right one-line
error, quickly and without the memory they claim; and ``rebuild`` from the files a gate kept."""

from __future__ import annotations

import gc
import hashlib
import mmap
import os
import random
import resource
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cbor2
import numpy as np
import pytest

import passgate.denylist as denylist
from passgate import cose
from passgate.denylist import (
    AAD,
    DEFAULT_MAX_BYTES,
    MAX_ENTRIES,
    CorruptFileError,
    Delta,
    DenyList,
    DenyListError,
    FormatError,
    LiveDenyList,
    MismatchError,
    SequenceError,
    SignatureError,
    TooLargeError,
    UntrustedKeyError,
    _head,
    inspect,
    read_signed,
    rebuild,
    sign_delta,
    sign_snapshot,
)
from passgate.keys import TrustStore, generate_private_key, key_id
from tests.fds import open_files

KEY = generate_private_key()
OTHER_KEY = generate_private_key()  # never trusted
TRUST = TrustStore()  # KEY signs these lists (a denylist key per scope the tests use)
TRUST.add(KEY.public_key(), purpose="denylist", scope="acme")
TRUST.add(KEY.public_key(), purpose="denylist", scope="zoo")
TRUST.add(KEY.public_key(), purpose="denylist", scope="other")
IDS = [hashlib.sha256(i.to_bytes(4, "big")).digest()[:16] for i in range(200)]
GIB, TIB = 1 << 30, 1 << 40
MEMORY_BUDGET_MB = 50


def local_file(path: Path, ids: list[bytes] = IDS[:5]) -> bytes:
    DenyList.from_ids(ids, kind="blocked", scope="acme", version=2, issued_at=7).save(path)
    return path.read_bytes()


def snapshot(ids: list[bytes], version: int, *, kind: str = "blocked", scope: str = "acme",
             key: object = KEY) -> bytes:
    return sign_snapshot(key, ids, kind=kind, scope=scope, version=version,  # type: ignore[arg-type]
                         issued_at=1000 + version)


def delta(base: int, adds: list[bytes] = (), removes: list[bytes] = (), *,  # type: ignore[assignment]
          kind: str = "blocked", scope: str = "acme") -> bytes:
    return sign_delta(KEY, kind=kind, scope=scope, base=base, adds=adds, removes=removes,
                      issued_at=1000 + base + 1)


def signed_header_file(header: dict[str, object], *, key: object = KEY) -> bytes:
    """The head of a signed file (magic, envelope, padding) for any header, signed by ``key``."""
    envelope = cose.sign1(cbor2.dumps(header), key, kid=key_id(key),  # type: ignore[arg-type]
                          external_aad=AAD)
    return _head(envelope)


def snapshot_header(count: int) -> dict[str, object]:
    return {"fmt": 1, "type": "snapshot", "hash": "sha256/8", "kind": "blocked", "scope": "acme",
            "version": 1, "issued_at": 0, "count": count, "digest": bytes(32)}


def local_header(count: int) -> dict[str, object]:
    return {"fmt": 1, "type": "local", "hash": "sha256/8", "kind": "blocked", "scope": "acme",
            "version": 1, "issued_at": 0, "count": count, "signer": None}


def sparse(path: Path, prefix: bytes, size: int) -> Path:
    """``prefix`` then a hole up to ``size`` bytes: no disk used, no data to read but zeros."""
    with path.open("wb") as f:
        f.write(prefix)
        try:
            f.truncate(size)
        except OSError as exc:  # a file system without sparse files this large
            pytest.skip(f"cannot make a sparse {size}-byte file here: {exc}")
    return path


# --- memory -----------------------------------------------------------------------------------


def _peak_kb() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])


def _reset_peak() -> Callable[[], int]:
    """A function giving the peak RSS (kB) since now. Linux: VmHWM, reset through clear_refs, so
    an earlier test's peak cannot hide growth; elsewhere ru_maxrss (a lifetime peak)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _peak_kb
    except OSError:
        return lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def refused_cheaply(error: type[DenyListError], call: Callable[[], object], *,
                    exact: bool = True) -> DenyListError:
    """``call`` raises ``error`` (exactly that class unless ``exact`` is False) and the peak
    resident memory grows by less than MEMORY_BUDGET_MB while it runs."""
    peak = _reset_peak()
    before = peak()
    with pytest.raises(DenyListError) as info:
        call()
    grown_mb = (peak() - before) / 1024
    assert isinstance(info.value, error) and (type(info.value) is error or not exact), info.value
    assert grown_mb < MEMORY_BUDGET_MB, f"peak RSS grew {grown_mb:.0f} MB"
    assert "\n" not in str(info.value)
    return info.value


# --- truncation and damage --------------------------------------------------------------------


def test_every_truncation_of_a_local_file_is_a_corrupt_file(tmp_path: Path) -> None:
    original = local_file(tmp_path / "whole.pgdl")
    path = tmp_path / "cut.pgdl"
    for cut in range(len(original)):
        path.write_bytes(original[:cut])
        with pytest.raises(CorruptFileError, match=str(path)):
            DenyList.load(path)
        with pytest.raises(FormatError):  # inspect does not know what a 3-byte file was meant to be
            inspect(path)
    path.write_bytes(original)
    assert len(DenyList.load(path)) == 5


@pytest.mark.parametrize("source", ["bytes", "file"])
@pytest.mark.parametrize(
    "make", [lambda: snapshot(IDS[:6], 3), lambda: delta(3, IDS[6:9], IDS[:2])],
    ids=["snapshot", "delta"],
)
def test_every_truncation_of_a_signed_file_is_a_format_error(
    tmp_path: Path, source: str, make: Callable[[], bytes]
) -> None:
    """A torn download: refused as malformed (not as corrupt, nor as a bad signature)."""
    original = make()
    path = tmp_path / "cut.pgdl"
    for cut in range(len(original)):
        data = original[:cut]
        path.write_bytes(data)
        with pytest.raises(FormatError) as info:
            read_signed(data if source == "bytes" else path, TRUST)
        assert type(info.value) is FormatError, info.value
    assert read_signed(original, TRUST)


@pytest.mark.parametrize("read", [DenyList.load, DenyList.map], ids=["load", "map"])
def test_every_bit_flip_of_a_local_file_is_a_corrupt_file(tmp_path: Path, read) -> None:
    original = local_file(tmp_path / "whole.pgdl", IDS[:3])
    path = tmp_path / "flipped.pgdl"
    for bit in range(len(original) * 8):
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(flipped)
        with pytest.raises(CorruptFileError):
            read(path)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"PGDX" + data[4:], id="bad-magic"),
        pytest.param(lambda data: data + bytes(8), id="longer-than-its-count"),
        pytest.param(lambda data: data[:-12] + data[-4:], id="shorter-than-its-count"),
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 1]), id="checksum"),
        pytest.param(lambda data: _head(cbor2.dumps(local_header(1) | {"kind": "x"}))
                     + bytes(12), id="bad-header"),
        pytest.param(lambda data: _head(cbor2.dumps(local_header(2))) + bytes(20),
                     id="unsorted-entries"),
        pytest.param(lambda data: snapshot(IDS[:3], 1), id="a-signed-file"),
    ],
)
def test_all_local_damage_is_one_class(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    """So a gate treats a damaged copy one way: set it aside, start empty or rebuilt."""
    path = tmp_path / "blocked.pgdl"
    path.write_bytes(damage(local_file(path)))
    with pytest.raises(CorruptFileError, match=str(path)) as info:
        DenyList.load(path)
    assert "\n" not in str(info.value)
    with pytest.raises(CorruptFileError):
        LiveDenyList(path, kind="blocked", scope="acme")


def test_a_non_regular_file_is_refused_without_waiting(tmp_path: Path) -> None:
    """A FIFO would block ``open`` until a writer came; it is refused at once instead."""
    fifo = tmp_path / "fifo.pgdl"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read_all() -> None:
        for call in (lambda: read_signed(fifo, TRUST), lambda: DenyList.load(fifo),
                     lambda: inspect(fifo)):
            try:
                call()
            except BaseException as exc:  # every outcome is checked below
                outcome.append(exc)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert [type(exc) for exc in outcome] == [FormatError, CorruptFileError, FormatError]
    assert all(str(exc) == f"{fifo}: not a regular file" for exc in outcome)


# --- sparse and hostile sizes -----------------------------------------------------------------


@pytest.mark.parametrize("size", [GIB, TIB], ids=["1GiB", "1TiB"])
def test_sparse_local_files_are_refused_without_reading_them(tmp_path: Path, size: int) -> None:
    # A real list whose file grew a hole: its size no longer matches its count.
    path = sparse(tmp_path / "grown.pgdl", local_file(tmp_path / "v.pgdl"), size)
    refused_cheaply(CorruptFileError, lambda: DenyList.load(path))
    refused_cheaply(CorruptFileError, lambda: inspect(path), exact=False)
    # A header whose count matches the hole: past the format's limit (1 TiB), or refused after
    # one read step, since zeros are not sorted and unique (1 GiB).
    count = (size - len(_head(cbor2.dumps(local_header(1 << 40)))) - 4) // 8
    head = _head(cbor2.dumps(local_header(count)))
    path = sparse(tmp_path / "hole.pgdl", head, len(head) + count * 8 + 4)
    error = refused_cheaply(CorruptFileError, lambda: DenyList.load(path))
    assert ("sorted" if size == GIB else f"more than {MAX_ENTRIES}") in str(error)


@pytest.mark.parametrize("size", [GIB, TIB], ids=["1GiB", "1TiB"])
def test_sparse_signed_files_are_refused_without_reading_them(tmp_path: Path, size: int) -> None:
    path = sparse(tmp_path / "grown.pgdl", snapshot(IDS[:5], 1), size)
    for call in (lambda: read_signed(path, TRUST), lambda: inspect(path, TRUST),
                 lambda: LiveDenyList(tmp_path / "live.pgdl", kind="blocked",
                                      scope="acme").apply_signed(path, TRUST)):
        error = refused_cheaply(FormatError, call)
        assert "truncated or damaged" in str(error)
    # A validly signed header whose count does not fit the body (more entries than 1 GiB holds;
    # the format's limit, far fewer than 1 TiB would hold).
    count = min(size // 8, MAX_ENTRIES)
    path = sparse(tmp_path / "claims.pgdl", signed_header_file(snapshot_header(count)), size)
    error = refused_cheaply(FormatError, lambda: read_signed(path, TRUST))
    assert f"header says {count} entries" in str(error)


def signed_head_of_size(size: int, *, key: object, kid: bytes) -> tuple[bytes, int]:
    """A signed snapshot head whose count makes a file of exactly ``size`` bytes."""

    def head(count: int) -> bytes:
        envelope = cose.sign1(cbor2.dumps(snapshot_header(count)), key,  # type: ignore[arg-type]
                              kid=kid, external_aad=AAD)
        return _head(envelope)

    count = (size - len(head(1 << 27))) // 8  # a count of the same CBOR length
    assert len(head(count)) + count * 8 == size
    return head(count), count


@pytest.mark.parametrize(
    ("kid", "error"),
    [(key_id(OTHER_KEY), UntrustedKeyError), (key_id(KEY), SignatureError)],
    ids=["untrusted-key", "forged-signature"],
)
def test_a_large_header_signed_without_the_key_is_refused_before_its_data(
    tmp_path: Path, kid: bytes, error: type[DenyListError]
) -> None:
    """Size and count agree (a sparse 1 GiB body), so only the signature stands in the way: it
    is checked before a byte of the data is read."""
    head, _ = signed_head_of_size(GIB, key=OTHER_KEY, kid=kid)
    path = sparse(tmp_path / "big.pgdl", head, GIB)
    refused_cheaply(error, lambda: read_signed(path, TRUST))
    skipped: dict[Path, str] = {}
    refused_cheaply(SequenceError, lambda: rebuild([path], TRUST, kind="blocked", scope="acme",
                                                   max_bytes=None, skipped=skipped))
    assert list(skipped) == [path]


def test_a_header_count_beyond_the_format_is_refused(tmp_path: Path) -> None:
    head = signed_header_file(snapshot_header(2**40))
    with pytest.raises(FormatError, match="more than"):
        read_signed(head + bytes(8), TRUST)
    path = tmp_path / "local.pgdl"
    path.write_bytes(_head(cbor2.dumps(local_header(2**40))) + bytes(12))
    with pytest.raises(CorruptFileError, match="more than"):
        DenyList.load(path)


# --- max_bytes --------------------------------------------------------------------------------


def test_default_cap_is_512_mib() -> None:
    assert DEFAULT_MAX_BYTES == 512 * 1024 * 1024 == 64 * 1024 * 1024 * 8


def test_max_bytes_refuses_from_the_size_alone(tmp_path: Path) -> None:
    """A 1 TiB file of zeros: were a byte read, the error would be 'bad magic', not too large."""
    path = sparse(tmp_path / "zeros.pgdl", b"", TIB)
    live = LiveDenyList(tmp_path / "live.pgdl", kind="blocked", scope="acme")
    for call in (lambda: read_signed(path, TRUST, max_bytes=DEFAULT_MAX_BYTES),
                 lambda: DenyList.load(path, max_bytes=DEFAULT_MAX_BYTES),
                 lambda: inspect(path, TRUST, max_bytes=DEFAULT_MAX_BYTES),
                 lambda: live.apply_signed(path, TRUST, max_bytes=DEFAULT_MAX_BYTES)):
        error = refused_cheaply(TooLargeError, call)
        assert str(error) == f"{path}: {TIB} bytes, more than the limit of {DEFAULT_MAX_BYTES}"
    assert live.current.version == 0


def test_max_bytes_is_inclusive_and_applies_to_bytes(tmp_path: Path) -> None:
    data = snapshot(IDS[:4], 2)
    assert read_signed(data, TRUST, max_bytes=len(data))
    with pytest.raises(TooLargeError):
        read_signed(data, TRUST, max_bytes=len(data) - 1)
    path = tmp_path / "local.pgdl"
    size = len(local_file(path))
    assert len(DenyList.load(path, max_bytes=size)) == 5
    with pytest.raises(TooLargeError):
        DenyList.load(path, max_bytes=size - 1)
    live = LiveDenyList(tmp_path / "live.pgdl", kind="blocked", scope="acme")
    with pytest.raises(TooLargeError):
        live.apply_signed(data, TRUST, max_bytes=len(data) - 1)
    assert live.apply_signed(data, TRUST, max_bytes=len(data)).version == 2


def test_a_list_too_big_for_memory_is_a_deny_list_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No MemoryError escapes: allocating the entries fails as TooLargeError (CorruptFileError
    for the gate's own copy, which it then sets aside)."""
    signed = tmp_path / "s.pgdl"
    signed.write_bytes(snapshot(IDS[:4], 2))
    local = tmp_path / "l.pgdl"
    local_file(local)
    real_empty = np.empty

    def no_memory(shape: object, dtype: object = float) -> np.ndarray:
        if dtype == np.dtype("<u8"):
            raise MemoryError
        return real_empty(shape, dtype)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(denylist.np, "empty", no_memory)
    with pytest.raises(TooLargeError, match="do not fit in memory"):
        read_signed(signed, TRUST)
    with pytest.raises(CorruptFileError, match="do not fit in memory"):
        DenyList.load(local)


# --- rebuild ----------------------------------------------------------------------------------


MEMBERS = {1: IDS[:10]}  # the chain's versions: each adds two ids and drops the oldest
for _version in range(2, 7):
    MEMBERS[_version] = MEMBERS[_version - 1][1:] + IDS[10 + 2 * _version : 12 + 2 * _version]


@pytest.fixture()
def chain(tmp_path: Path) -> dict[str, Path]:
    """Snapshots v1 and v3 and deltas 1→2 … 5→6 of one blocked list, as a gate keeps them."""
    files = {"s1": snapshot(MEMBERS[1], 1), "s3": snapshot(MEMBERS[3], 3)}
    for base in range(1, 6):
        old, new = set(MEMBERS[base]), set(MEMBERS[base + 1])
        files[f"d{base}"] = delta(base, sorted(new - old), sorted(old - new))
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.pgdl"
        paths[name].write_bytes(data)
    return paths


def expected(version: int) -> DenyList:
    return DenyList.from_ids(MEMBERS[version], kind="blocked", scope="acme", version=version)


def test_rebuild_follows_the_chain_in_any_order(chain: dict[str, Path]) -> None:
    files = list(chain.values())
    for seed in range(5):
        random.Random(seed).shuffle(files)
        skipped: dict[Path, str] = {}
        dl = rebuild(files, TRUST, kind="blocked", scope="acme", skipped=skipped)
        assert dl.version == 6 and dl.same_entries(expected(6)) and not skipped
        assert (dl.kind, dl.scope, dl.issued_at, dl.signer) == ("blocked", "acme", 1006, key_id(KEY))


def test_rebuild_stops_before_a_missing_delta(chain: dict[str, Path]) -> None:
    files = [path for name, path in chain.items() if name != "d4"]
    dl = rebuild(files, TRUST, kind="blocked", scope="acme")
    assert dl.version == 4 and dl.same_entries(expected(4))


def test_rebuild_falls_back_to_an_older_snapshot(chain: dict[str, Path]) -> None:
    data = bytearray(chain["s3"].read_bytes())
    data[-3] ^= 0x40  # the data no longer matches the signed digest
    chain["s3"].write_bytes(data)
    skipped: dict[Path, str] = {}
    dl = rebuild(chain.values(), TRUST, kind="blocked", scope="acme", skipped=skipped)
    assert dl.version == 6 and dl.same_entries(expected(6))
    assert list(skipped) == [chain["s3"]] and "digest" in skipped[chain["s3"]]


def test_rebuild_uses_a_good_copy_beside_a_damaged_delta(chain: dict[str, Path]) -> None:
    damaged = chain["d2"].with_name("d2-copy.pgdl")
    data = bytearray(chain["d2"].read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(data)
    for files in ([damaged, *chain.values()], [*chain.values(), damaged]):
        dl = rebuild(files, TRUST, kind="blocked", scope="acme")
        assert dl.version == 6 and dl.same_entries(expected(6))


def test_rebuild_ignores_other_lists_junk_and_strangers(chain: dict[str, Path],
                                                        tmp_path: Path) -> None:
    extra = {
        "other-scope": snapshot(IDS[:1], 9, scope="other"),
        "other-kind": snapshot(IDS[:1], 9, kind="revoked"),
        "other-delta": delta(6, IDS[:1], scope="other"),
        "stranger-snapshot": snapshot(IDS[:1], 9, key=OTHER_KEY),
        "junk": b"not a deny list at all",
        "empty": b"",
        "truncated": chain["s3"].read_bytes()[:-5],
    }
    paths = []
    for name, data in extra.items():
        paths.append(tmp_path / f"{name}.pgdl")
        paths[-1].write_bytes(data)
    local_file(tmp_path / "local.pgdl")
    paths += [tmp_path / "local.pgdl", tmp_path / "missing.pgdl", tmp_path]
    skipped: dict[Path, str] = {}
    dl = rebuild([*paths, *chain.values()], TRUST, kind="blocked", scope="acme", skipped=skipped)
    assert dl.version == 6 and dl.same_entries(expected(6))
    refused = {path.name for path in skipped}
    assert refused == {"stranger-snapshot.pgdl", "junk.pgdl", "empty.pgdl", "truncated.pgdl",
                       "local.pgdl", "missing.pgdl", tmp_path.name}
    assert "not in the trust store" in skipped[tmp_path / "stranger-snapshot.pgdl"]
    assert all("\n" not in why for why in skipped.values())


def test_rebuild_without_a_usable_snapshot_is_an_error(chain: dict[str, Path],
                                                       tmp_path: Path) -> None:
    deltas = [path for name, path in chain.items() if name.startswith("d")]
    with pytest.raises(SequenceError, match="no blocked snapshot for scope 'acme' verifies"):
        rebuild(deltas, TRUST, kind="blocked", scope="acme")
    with pytest.raises(SequenceError, match="among 0 file"):
        rebuild([], TRUST, kind="blocked", scope="acme")
    with pytest.raises(SequenceError, match="no revoked snapshot"):
        rebuild(chain.values(), TRUST, kind="revoked", scope="acme")
    stranger = TrustStore()
    stranger.add(OTHER_KEY.public_key())
    with pytest.raises(SequenceError, match=r"1 refused, e\.g\. .*not in the trust store"):
        rebuild([chain["s1"]], stranger, kind="blocked", scope="acme")


def test_rebuild_reads_only_what_it_applies_one_file_at_a_time(
    chain: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers first (no data), then the newest snapshot and each delta in version order: never
    more than the list being built and one update in memory."""
    reads: list[str] = []
    real = denylist.read_signed

    def recording(source: Path, trust: TrustStore, *, max_bytes: int | None = None
                  ) -> DenyList | Delta:
        reads.append(Path(source).stem)
        return real(source, trust, max_bytes=max_bytes)

    monkeypatch.setattr(denylist, "read_signed", recording)
    files = list(chain.values())
    random.Random(3).shuffle(files)
    assert rebuild(files, TRUST, kind="blocked", scope="acme").version == 6
    assert reads == ["s3", "d3", "d4", "d5"]


def test_rebuild_honours_max_bytes(chain: dict[str, Path]) -> None:
    skipped: dict[Path, str] = {}
    small = min(path.stat().st_size for path in chain.values())
    with pytest.raises(SequenceError):
        rebuild(chain.values(), TRUST, kind="blocked", scope="acme", max_bytes=small - 1,
                skipped=skipped)
    assert len(skipped) == len(chain) and all("limit" in why for why in skipped.values())


def test_live_list_starts_from_a_rebuilt_list(chain: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "blocked.pgdl"
    path.write_bytes(b"PGDL damaged")
    with pytest.raises(CorruptFileError):
        LiveDenyList(path, kind="blocked", scope="acme")
    rebuilt = rebuild(chain.values(), TRUST, kind="blocked", scope="acme")
    live = LiveDenyList(path, kind="blocked", scope="acme", initial=rebuilt)
    assert live.current is rebuilt
    assert DenyList.load(path).same_entries(rebuilt)  # saved at once: a restart finds it
    assert LiveDenyList(path, kind="blocked", scope="acme").current.version == 6
    with pytest.raises(MismatchError, match="initial list"):
        LiveDenyList(tmp_path / "r.pgdl", kind="revoked", scope="acme", initial=rebuilt)
    assert not (tmp_path / "r.pgdl").exists()


# --- every reader: only DenyListError -----------------------------------------------------------


def _all_readers(path: Path) -> Iterator[Callable[[], object]]:
    yield lambda: read_signed(path, TRUST)
    yield lambda: read_signed(path.read_bytes(), TRUST)
    yield lambda: DenyList.load(path)
    yield lambda: inspect(path, TRUST)
    yield lambda: rebuild([path], TRUST, kind="blocked", scope="acme")


@pytest.mark.parametrize("seed", range(20))
def test_mutated_files_only_raise_deny_list_errors(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    originals = [snapshot(IDS[:20], 2), delta(2, IDS[20:25], IDS[:3]),
                 local_file(tmp_path / "l.pgdl", IDS[:20])]
    path = tmp_path / "m.pgdl"
    for original in originals:
        for _ in range(25):
            data = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(data))
                data[at] = rng.randrange(256)
            if rng.random() < 0.3:
                del data[rng.randrange(len(data)) :]
            path.write_bytes(data)
            for call in _all_readers(path):
                try:
                    call()
                except DenyListError as exc:
                    assert "\n" not in str(exc)


# -- the contract, pinned down --------------------------------------------------------------


def keys(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def test_format_constants() -> None:
    assert (MAX_ENTRIES, denylist._CHUNK, denylist._READ) == (2**32 - 1, 65_536, 1 << 20)
    assert (denylist.MAX_ENVELOPE, DEFAULT_MAX_BYTES) == (65_536, 512 * 1024 * 1024)


def test_a_list_takes_any_integer_array_and_keeps_it_read_only_without_copying() -> None:
    mine = np.arange(0, 40, 2, dtype=np.uint64)
    dl = DenyList(mine, kind="blocked", scope="acme", version=3, issued_at=9)
    assert np.shares_memory(dl.keys, mine) and mine.flags.writeable  # the caller's array is untouched
    with pytest.raises(ValueError, match="read-only"):
        dl.keys[0] = 1
    strided = DenyList(np.arange(0, 40, dtype=np.int64)[::2], kind="blocked", scope="", version=1,
                       issued_at=0)  # a view with a stride, of another integer type
    assert strided.same_entries(dl) and strided.keys.dtype == np.uint64
    assert DenyList([5, 7], kind="blocked", scope="", version=1, issued_at=0).same_entries(  # type: ignore[arg-type]
        DenyList(keys(5, 7), kind="blocked", scope="", version=1, issued_at=0))
    assert not hasattr(dl, "__dict__")  # slots: ten million lists would not, but a gate holds several
    assert repr(dl) == "<DenyList blocked scope='acme' version=3 entries=20>"
    assert DenyList.from_ids(IDS[:2], kind="revoked", scope="x").version == 1


def test_entries_are_refused_unless_flat_sorted_unique_and_few_enough(monkeypatch) -> None:
    with pytest.raises(FormatError, match=r"^entries must be a flat array$"):
        DenyList(np.zeros((2, 2), dtype=np.uint64), kind="blocked", scope="", version=1, issued_at=0)
    with pytest.raises(FormatError, match=r"^entries are not sorted and unique$"):
        DenyList(keys(1, 0), kind="blocked", scope="", version=1, issued_at=0)
    for bad in (dict(kind="banned"), dict(scope=7), dict(version=-1), dict(issued_at=1.5)):
        with pytest.raises(FormatError):
            DenyList(keys(1), **{"kind": "blocked", "scope": "", "version": 1, "issued_at": 0, **bad})
    with pytest.raises(FormatError, match=r"^version must be a non-negative integer$"):
        DenyList(keys(1), kind="blocked", scope="", version=-1, issued_at=0)
    with pytest.raises(FormatError, match=r"^issued_at must be a non-negative integer$"):
        DenyList(keys(1), kind="blocked", scope="", version=1, issued_at=-1)
    monkeypatch.setattr(denylist, "MAX_ENTRIES", 3)
    assert len(DenyList(keys(1, 2, 3), kind="blocked", scope="", version=1, issued_at=0)) == 3
    with pytest.raises(FormatError, match=r"^entries: more than 3 entries$"):
        DenyList(keys(1, 2, 3, 4), kind="blocked", scope="", version=1, issued_at=0)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 1_000, 100_000, 1 << 20])
def test_the_bucket_index_holds_eight_to_sixteen_entries_a_bucket(n: int) -> None:
    """4 bytes of index per ~10 entries: the memory figure README gives depends on it."""
    dl = DenyList(np.arange(n, dtype=np.uint64) * np.uint64((2**64 - 1) // max(n, 1)), kind="blocked",
                  scope="", version=1, issued_at=0)
    buckets = len(dl._index) - 1
    if n < 16:
        assert buckets == 1
    else:
        assert 8 <= n / buckets < 16


def test_deltas_check_what_they_are_given() -> None:
    with pytest.raises(FormatError, match=r"^added entries are not sorted and unique$"):
        Delta("blocked", "acme", 1, 0, keys(2, 1), keys())
    with pytest.raises(FormatError, match=r"^removed entries are not sorted and unique$"):
        Delta("blocked", "acme", 1, 0, keys(), keys(3, 3))
    with pytest.raises(FormatError, match=r"^kind must be one of revoked, blocked"):
        Delta("banned", "acme", 1, 0, keys(), keys())
    d = Delta("blocked", "acme", 1, 0, np.array([1, 5], dtype=np.int64), np.array([3]))
    assert d.adds.dtype == d.removes.dtype == np.uint64 and not d.adds.flags.writeable
    assert (d.adds.tolist(), d.removes.tolist(), d.version) == ([1, 5], [3], 2)


def test_a_delta_between_two_lists_only_for_a_later_version_of_the_same_list() -> None:
    old = DenyList(keys(1, 2, 3), kind="blocked", scope="acme", version=4, issued_at=10)
    new = DenyList(keys(2, 3, 9), kind="blocked", scope="acme", version=5, issued_at=20)
    d = Delta.between(old, new)
    assert (d.adds.tolist(), d.removes.tolist(), d.base, d.issued_at) == ([9], [1], 4, 20)
    with pytest.raises(MismatchError):
        Delta.between(old, DenyList(keys(2), kind="blocked", scope="other", version=5, issued_at=0))
    with pytest.raises(MismatchError):
        Delta.between(old, DenyList(keys(2), kind="revoked", scope="acme", version=5, issued_at=0))
    for version in (3, 4):
        with pytest.raises(SequenceError, match=rf"^version {version} does not follow 4$"):
            Delta.between(old, DenyList(keys(2), kind="blocked", scope="acme", version=version, issued_at=0))
    compacted = Delta.between(old, DenyList(keys(2), kind="blocked", scope="acme", version=6, issued_at=0))
    assert (compacted.base, compacted.version, compacted.removes.tolist()) == (4, 6, [1, 3])


def test_read_header_reports_a_verified_file_without_its_data(tmp_path: Path) -> None:
    s = tmp_path / "s.pgdl"
    s.write_bytes(snapshot(IDS[:7], 4, kind="revoked", scope="zoo"))
    d = tmp_path / "d.pgdl"
    d.write_bytes(delta(4, adds=IDS[10:13], removes=IDS[:2]))
    assert denylist.read_header(s, TRUST) == denylist.SignedHeader(
        kind="revoked", scope="zoo", version=4, is_delta=False, issued_at=1004, entries=7)
    assert denylist.read_header(str(d), TRUST) == denylist.SignedHeader(
        kind="blocked", scope="acme", version=5, is_delta=True, issued_at=1005, entries=5, base=4)
    stranger = TrustStore()
    stranger.add(OTHER_KEY.public_key())
    with pytest.raises(UntrustedKeyError):
        denylist.read_header(s, stranger)


def test_inspect_says_what_it_checked(tmp_path: Path) -> None:
    local = tmp_path / "l.pgdl"
    data = local_file(local)
    for source in (local, data):
        summary = inspect(source)
        assert (summary["status"], summary["ok"], summary["entries"]) == ("local file, checksum ok", True, 5)
        assert summary["signer"] is None and summary["version"] == 2
    damaged = bytearray(data)
    damaged[-12] ^= 1  # an entry, not the header
    (tmp_path / "bad.pgdl").write_bytes(damaged)
    for source in (tmp_path / "bad.pgdl", bytes(damaged)):
        summary = inspect(source)
        assert (summary["status"], summary["ok"]) == ("local file, checksum MISMATCH", False)
    signed = delta(3, adds=IDS[:2], removes=IDS[5:6])
    summary = inspect(signed)
    assert (summary["status"], summary["ok"]) == ("signature not checked (no trust store given)", None)
    assert (summary["base"], summary["adds"], summary["removes"], summary["signer"]) == (
        3, 2, 1, key_id(KEY).hex())
    assert inspect(signed, TRUST)["status"] == "signature valid"
    stranger = TrustStore()
    stranger.add(OTHER_KEY.public_key())
    refused = inspect(signed, stranger)
    assert refused["ok"] is False and refused["status"].startswith("INVALID: signed by a key not in")


def test_header_faults_each_have_their_message(tmp_path: Path) -> None:
    base = snapshot_header(0)

    def refused(header: dict[str, object], match: str) -> None:
        with pytest.raises(FormatError, match=match):
            read_signed(signed_header_file(header), TRUST)

    refused({**base, "fmt": 2}, r"^unsupported format 2 / hash 'sha256/8'$")
    refused({**base, "hash": "md5"}, r"^unsupported format 1 / hash 'md5'$")
    refused({**base, "digest": bytes(31)}, r"^bad 'digest' field$")
    refused({**base, "type": "local", "signer": None}, r"^a local list file cannot be signed$")
    envelope = b"\xff\xfe\xfd"
    raw = b"PGDL" + len(envelope).to_bytes(4, "little") + envelope + bytes(5)
    with pytest.raises(FormatError, match=r"^header is not CBOR \("):
        read_signed(raw, TRUST)
    for length, message in ((0, "bad header length 0"), (65_537, "bad header length 65537")):
        with pytest.raises(FormatError, match=f"^{message}$"):
            read_signed(b"PGDL" + length.to_bytes(4, "little") + bytes(16), TRUST)
    at_limit = b"PGDL" + (65_536).to_bytes(4, "little") + bytes(16)
    with pytest.raises(FormatError, match="truncated"):  # the largest length is allowed: cut short
        read_signed(at_limit, TRUST)
    whole = signed_header_file(base)
    length = int.from_bytes(whole[4:8], "little")
    assert (8 + length) % 8  # this header needs padding: cut the file inside it
    with pytest.raises(FormatError, match=r"^truncated deny list file \(it ends in its header\)$"):
        read_signed(whole[: 8 + length], TRUST)
    bad_signer = {**local_header(0), "signer": 5}
    head = _head(cbor2.dumps(bad_signer))
    (tmp_path / "s.pgdl").write_bytes(head + zlib.crc32(head).to_bytes(4, "little"))
    with pytest.raises(CorruptFileError, match=r"bad 'signer' field"):
        DenyList.load(tmp_path / "s.pgdl")


def test_the_reader_reads_front_to_back_from_bytes_and_from_a_file(tmp_path: Path) -> None:
    data = b"HEAD" + keys(1, 5, 9).astype("<u8").tobytes() + b"TAIL" + bytes(range(40)) + b"END"
    (tmp_path / "f").write_bytes(data)
    for source in (data, tmp_path / "f"):
        seen: list[bytes] = []
        with denylist._Input(source) as src:
            assert src.read(4) == b"HEAD"
            entries = src.entries(3, lambda part, seen=seen: seen.append(bytes(part)), check_order=True)
            assert entries.tolist() == [1, 5, 9] and b"".join(seen) == data[4:28]
            assert src.read(4) == b"TAIL"
            streamed: list[bytes] = []
            src.stream(40, lambda part, streamed=streamed: streamed.append(bytes(part)))
            assert b"".join(streamed) == bytes(range(40)) and src.read(10) == b"END"
    unsorted = keys(9, 5).astype("<u8").tobytes()
    (tmp_path / "u").write_bytes(unsorted)
    for source in (unsorted, tmp_path / "u"):
        with denylist._Input(source) as src, pytest.raises(FormatError, match=r"^entries are not sorted"):
            src.entries(2, lambda part: None, check_order=True)
        with denylist._Input(source) as src:  # a signed file's order is checked by its digest
            assert src.entries(2, lambda part: None, check_order=False).tolist() == [9, 5]


def test_entries_read_from_a_bytearray_are_a_copy() -> None:
    data = bytearray(snapshot(IDS[:3], 1))
    dl = read_signed(data, TRUST)
    before = dl.keys.tolist()
    data[-8:] = bytes(8)
    assert isinstance(dl, DenyList) and dl.keys.tolist() == before


def test_a_file_that_shrinks_while_it_is_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(64))
    with denylist._Input(path) as src:
        os.truncate(path, 20)
        with pytest.raises(FormatError, match=r"^the file ended early \(did it change while it was read"):
            src.entries(8, lambda part: None, check_order=False)
    with denylist._Input(path) as src:
        os.truncate(path, 8)
        with pytest.raises(FormatError, match="ended early"):
            src.stream(20, lambda part: None)


@pytest.mark.parametrize("at", [0, 120_000, 131_071, 131_072, 140_000])
def test_order_is_checked_across_every_read_of_a_local_file(tmp_path: Path, at: int) -> None:
    """The data arrives 1 MiB (131,072 entries) at a time; a pair out of order anywhere is refused,
    at the start, late in a read, and across the boundary of two reads."""
    entries = np.arange(1, 150_001, dtype=np.uint64)
    DenyList(entries, kind="blocked", scope="", version=1, issued_at=0).save(tmp_path / "l.pgdl")
    data = bytearray((tmp_path / "l.pgdl").read_bytes())
    start = len(data) - 4 - len(entries) * 8
    swapped = entries.copy()
    swapped[[at, at + 1]] = swapped[[at + 1, at]]
    data[start : start + len(entries) * 8] = swapped.astype("<u8").tobytes()
    head = bytes(data[:start])
    body = bytes(data[start:-4])
    data[-4:] = zlib.crc32(body, zlib.crc32(head)).to_bytes(4, "little")  # a valid checksum
    (tmp_path / "l.pgdl").write_bytes(data)
    with pytest.raises(CorruptFileError, match="not sorted and unique"):
        DenyList.load(tmp_path / "l.pgdl")


def test_reading_leaves_no_file_open(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    good = tmp_path / "s.pgdl"
    good.write_bytes(snapshot(IDS[:3], 1))
    for _ in range(20):
        with pytest.raises(FormatError, match="not a regular file"):
            read_signed(fifo, TRUST, max_bytes=0)  # refused as what it is, not for its size
        read_signed(good, TRUST)
        denylist.atomic_write(tmp_path / "w.pgdl", [b"x"])
    assert open_files(tmp_path) == []


def test_a_list_whose_index_does_not_fit_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signed = tmp_path / "s.pgdl"
    signed.write_bytes(snapshot(IDS[:4], 2))
    real_empty = np.empty

    def no_memory(shape: object, dtype: object = float) -> np.ndarray:
        if dtype == np.uint32:  # the bucket index, after the entries were read
            raise MemoryError
        return real_empty(shape, dtype)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(denylist.np, "empty", no_memory)
    with pytest.raises(TooLargeError, match=r"s\.pgdl: not enough memory for this list$"):
        read_signed(signed, TRUST)


def test_atomic_write_is_durable_and_leaves_nothing_half_written(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "list.pgdl"
    target.write_bytes(b"old")
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(denylist.os, "fsync", fsync)
    old_umask = os.umask(0o022)
    try:
        seen: list[list[str]] = []

        def parts() -> Iterator[bytes]:
            yield b"new "
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
            yield b"list"

        denylist.atomic_write(str(target), parts())
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new list" and seen == [["list.pgdl", "list.pgdl.partial"]]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert synced == [(str(tmp_path / "list.pgdl.partial"), 8), (str(tmp_path), synced[1][1])]

    def broken() -> Iterator[bytes]:
        yield b"half"
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        denylist.atomic_write(target, broken())
    assert target.read_bytes() == b"new list" and [p.name for p in tmp_path.iterdir()] == ["list.pgdl"]


def test_rebuild_passes_over_files_that_changed_between_its_two_reads(chain: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """rebuild reads every header first, then the files it applies: a file replaced in between (by
    another list's, or another version's) is named in ``skipped`` and passed over."""
    other_kind = snapshot(IDS[:3], 9, kind="revoked")
    wrong_base = delta(2, adds=IDS[150:151])

    def files() -> Iterator[Path]:
        yield from chain.values()
        chain["s3"].write_bytes(other_kind)  # after the first pass has read every header
        chain["d4"].write_bytes(wrong_base)

    skipped: dict[Path, str] = {}
    dl = rebuild(files(), TRUST, kind="blocked", scope="acme", skipped=skipped)
    assert dl.version == 4 and dl.same_entries(expected(4))  # from s1, as far as d3: d4 changed
    assert skipped == {chain["s3"]: "changed while the list was rebuilt",
                       chain["d4"]: "changed while the list was rebuilt"}


def test_rebuild_with_two_copies_of_a_delta_uses_one_and_refuses_nothing(chain: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    copy = tmp_path / "copy-of-d1.pgdl"
    copy.write_bytes(chain["d1"].read_bytes())
    skipped: dict[Path, str] = {}
    dl = rebuild([chain["s1"], chain["d1"], copy, chain["d2"]], TRUST, kind="blocked", scope="acme",
                 skipped=skipped)
    assert dl.version == 3 and skipped == {}


def test_rebuild_names_its_arguments_and_counts_its_files(chain: dict[str, Path]) -> None:
    with pytest.raises(FormatError, match=r"^kind must be one of"):
        rebuild(chain.values(), TRUST, kind="banned", scope="acme")
    with pytest.raises(FormatError, match=r"^scope must be a string$"):
        rebuild(chain.values(), TRUST, kind="blocked", scope=5)  # type: ignore[arg-type]
    with pytest.raises(SequenceError, match=r"^no blocked snapshot for scope 'acme' verifies among 3 file"):
        rebuild([chain["d1"], chain["d2"], chain["d3"]], TRUST, kind="blocked", scope="acme")


def test_live_list_refuses_another_lists_updates_by_name(tmp_path: Path) -> None:
    revoked = DenyList(keys(1), kind="revoked", scope="acme", version=1, issued_at=0)
    with pytest.raises(MismatchError, match=r"^the initial list is revoked list 'acme', not blocked list"):
        LiveDenyList(tmp_path / "b.pgdl", kind="blocked", scope="acme", initial=revoked)
    live = LiveDenyList(tmp_path / "b.pgdl", kind="blocked", scope="acme")
    for other in (DenyList(keys(1), kind="blocked", scope="zoo", version=5, issued_at=0),
                  DenyList(keys(1), kind="revoked", scope="acme", version=5, issued_at=0)):
        with pytest.raises(MismatchError, match=r"^snapshot is for "):
            live.apply(other)
    assert live.current.version == 0 and not (tmp_path / "b.pgdl").exists()


def test_smaller_faults_by_their_messages(tmp_path: Path) -> None:
    one = b"PGDL" + (1).to_bytes(4, "little") + b"\x00" + bytes(7)  # a one-byte header: the integer 0
    with pytest.raises(CorruptFileError, match=r"^header is not a map$"):
        inspect(one)
    envelope = cose.sign1(cbor2.dumps(snapshot_header(0)), KEY, external_aad=AAD)  # no kid
    with pytest.raises(UntrustedKeyError, match=r"\(kid none\)$"):
        read_signed(_head(envelope), TRUST)
    received = read_signed(snapshot(IDS[:3], 2), TRUST)
    assert isinstance(received, DenyList)
    received.save(tmp_path / "l.pgdl")  # the gate's copy remembers who signed what it holds
    assert inspect(tmp_path / "l.pgdl")["signer"] == key_id(KEY).hex()


# -- the gate's path: lists mapped from their files, updates written a step at a time ---------


def backing(dl: DenyList) -> object:
    """What a list's entries live in: an ``mmap`` for a mapped list."""
    base: object = dl.keys
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def deleted_mappings(under: Path) -> list[str]:
    """Files under ``under`` that this process still maps although they were replaced."""
    with open("/proc/self/maps") as f:
        return sorted({line.split(None, 5)[5].strip() for line in f
                       if str(under) in line and line.rstrip().endswith("(deleted)")})


def big(count: int, seed: int = 1) -> np.ndarray:
    return np.unique(np.random.default_rng(seed).integers(0, 2**64, count, dtype=np.uint64))


def test_map_refuses_what_load_refuses(tmp_path: Path) -> None:
    original = local_file(tmp_path / "whole.pgdl", IDS[:3])
    path = tmp_path / "damaged.pgdl"
    for cut in range(len(original)):
        path.write_bytes(original[:cut])
        with pytest.raises(CorruptFileError, match=str(path)):
            DenyList.map(path)
    path.write_bytes(original)  # (every bit flipped: test_every_bit_flip_of_a_local_file_is_a_corrupt_file)
    mapped = DenyList.map(path)
    assert mapped.same_entries(DenyList.load(path)) and isinstance(backing(mapped), mmap.mmap)
    assert (mapped.kind, mapped.scope, mapped.version, mapped.issued_at) == ("blocked", "acme", 2, 7)
    with pytest.raises(TooLargeError):
        DenyList.map(path, max_bytes=len(original) - 1)
    assert open_files(tmp_path) == [str(path)]  # the mapping's (Python's mmap keeps a descriptor)
    del mapped
    gc.collect()
    assert open_files(tmp_path) == []


@pytest.mark.parametrize("at", [0, 131_071, 140_000])
def test_map_checks_the_order_across_its_steps(tmp_path: Path, at: int) -> None:
    entries = np.arange(1, 150_001, dtype=np.uint64)
    swapped = entries.copy()
    swapped[[at, at + 1]] = swapped[[at + 1, at]]
    head = _head(cbor2.dumps(local_header(len(entries))))
    body = swapped.astype("<u8").tobytes()
    (tmp_path / "l.pgdl").write_bytes(head + body + zlib.crc32(body, zlib.crc32(head)).to_bytes(4, "little"))
    with pytest.raises(CorruptFileError, match="not sorted and unique"):
        DenyList.map(tmp_path / "l.pgdl")


@pytest.mark.parametrize("grow", [20_000, 100_000], ids=["same-buckets", "more-buckets"])
def test_a_large_delta_merged_into_the_file_is_the_list_apply_builds(tmp_path: Path, grow: int) -> None:
    """Many steps of the real size; the index moved from the old one, or (when the list grows
    into more buckets) built as the entries pass."""
    keys = big(120_000)
    old = DenyList(keys, kind="blocked", scope="acme", version=1, issued_at=0)
    adds = np.setdiff1d(big(grow, seed=2), keys)
    delta = Delta("blocked", "acme", 1, 5, adds, keys[::13])
    path = tmp_path / "l.pgdl"
    old.save(path)
    merged = DenyList.map(path).apply_to_file(delta, path)
    expected = old.apply(delta)
    assert merged.same_entries(expected) and bytes(merged._index) == bytes(expected._index)
    assert (merged._shift == old._shift) == (grow == 20_000)
    assert isinstance(backing(merged), mmap.mmap) and DenyList.map(path).same_entries(expected)


def live_list(path: Path, count: int = 300_000) -> tuple[LiveDenyList, bytes]:
    """A live list at version 1 mapped from ``path`` (a few steps of data), and the file's bytes."""
    DenyList(big(count), kind="blocked", scope="acme", version=1, issued_at=0).save(path)
    live = LiveDenyList(path, kind="blocked", scope="acme")
    assert isinstance(backing(live.current), mmap.mmap)
    return live, path.read_bytes()


def unchanged(live: LiveDenyList, before: DenyList, on_disk: bytes) -> None:
    assert live.current is before and live.path.read_bytes() == on_disk
    assert [p.name for p in live.path.parent.iterdir() if p.name.endswith(".partial")] == []
    assert before.keys[7] in before.keys and len(before) == len(DenyList.load(live.path))


def test_a_torn_or_tampered_snapshot_leaves_the_old_list(tmp_path: Path) -> None:
    live, on_disk = live_list(tmp_path / "blocked.pgdl")
    before = live.current
    data = DenyList(big(200_000, seed=3), kind="blocked", scope="acme", version=2,
                    issued_at=9).to_signed(KEY)
    source = tmp_path / "v2.pgdl"
    for cut in (10, 600, len(data) // 2, len(data) - 1):  # a download cut short
        for torn in (data[:cut], source):
            source.write_bytes(data[:cut])
            with pytest.raises(FormatError) as info:
                live.apply_signed(torn, TRUST)
            assert type(info.value) is FormatError, info.value
            unchanged(live, before, on_disk)
    start = len(data) - 200_000 * 8
    for at in (start + 8 * 150_000 + 7, len(data) - 1):  # an entry's top byte (out of order), its last
        tampered = bytearray(data)
        tampered[at] ^= 0x80
        source.write_bytes(tampered)
        for torn in (bytes(tampered), source):
            with pytest.raises(SignatureError, match="digest"):
                live.apply_signed(torn, TRUST)
            unchanged(live, before, on_disk)
    source.write_bytes(data)
    new = live.apply_signed(source, TRUST)
    assert live.current is new and new.version == 2 and isinstance(backing(new), mmap.mmap)
    assert new.same_entries(read_signed(data, TRUST))  # type: ignore[arg-type]
    assert (new.signer, DenyList.map(live.path).signer) == (key_id(KEY), key_id(KEY))


@pytest.mark.parametrize("where", ["flush-behind", "last-fsync", "write"])
@pytest.mark.parametrize("update", ["delta", "snapshot"])
def test_a_write_that_fails_leaves_the_old_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                where: str, update: str) -> None:
    live, on_disk = live_list(tmp_path / "blocked.pgdl")
    before = live.current
    data = (delta(1, adds=IDS[:50], removes=[]) if update == "delta" else
            DenyList(big(300_000, seed=3), kind="blocked", scope="acme", version=2,
                     issued_at=9).to_signed(KEY))  # a block (2 MiB) written before the last step
    real_fsync, real_le = os.fsync, denylist._little_endian
    monkeypatch.setattr(denylist, "_FLUSH", 1)  # the flush-behind thread flushes after every step
    failed = threading.Event()

    def fsync(fd: int) -> None:
        flusher = threading.current_thread().name == "denylist-flush"
        if where == ("flush-behind" if flusher else "last-fsync"):
            failed.set()
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    def little_endian(keys: np.ndarray) -> memoryview:
        if len(keys) < 100_000:  # the last step
            if where == "write":
                raise OSError(28, "No space left on device")
            if where == "flush-behind":
                assert failed.wait(10)  # the flush of the steps before it failed meanwhile
        return real_le(keys)

    monkeypatch.setattr(denylist, "_little_endian", little_endian)
    monkeypatch.setattr(denylist.os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error" if where != "write" else "No space"):
        live.apply_signed(data, TRUST)
    unchanged(live, before, on_disk)
    monkeypatch.undo()
    assert live.apply_signed(data, TRUST).version == 2


def test_list_files_are_written_in_whole_aligned_blocks() -> None:
    """So that the page cache can hold (and the kernel map) the file in 2 MiB pages."""
    writes: list[bytes] = []
    flushed: list[int] = []

    class File:
        def write(self, data: memoryview) -> None:
            writes.append(bytes(data))

    class Flusher:
        def wrote(self, size: int) -> None:
            flushed.append(size)

    blocks = denylist._Blocks(File(), Flusher())  # type: ignore[arg-type]
    data = bytes(range(256)) * 40_000
    for start, end in ((0, 100), (100, 3_000_000), (3_000_000, 4_194_304), (4_194_304, len(data))):
        blocks.write(memoryview(data)[start:end])
    blocks.close()
    block = denylist._BLOCK
    whole, rest = divmod(len(data), block)
    assert [len(w) for w in writes] == [block] * whole + [rest] == flushed
    assert b"".join(writes) == data and block == 2 << 20


def test_a_partial_file_left_by_a_killed_writer_is_ignored_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "blocked.pgdl"
    local_file(path, IDS[:5])
    (tmp_path / "blocked.pgdl.partial").write_bytes(b"PGDL half a li")
    live = LiveDenyList(path, kind="blocked", scope="acme")
    assert live.current.version == 2 and all(pass_id in live for pass_id in IDS[:5])
    live.apply_signed(delta(2, adds=IDS[5:6]), TRUST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked.pgdl"]
    assert DenyList.map(path).same_entries(DenyList.from_ids(IDS[:6]))


def test_readers_holding_old_lists_keep_answering_while_their_files_are_replaced(tmp_path: Path) -> None:
    """Each version's file is replaced by the next (snapshots copied, deltas merged); a reader
    that still holds a version keeps its mapping, and answers for it, until it lets go; then the
    replaced files' pages are gone (no mapping leaks)."""
    members = {1: IDS[:100], 2: IDS[100:200]}
    for version in range(3, 9):
        members[version] = members[version - 1][10:] + IDS[90 + 10 * version : 100 + 10 * version]
    path = tmp_path / "blocked.pgdl"
    DenyList.from_ids(members[1], kind="blocked", scope="acme", version=1, issued_at=0).save(path)
    live = LiveDenyList(path, kind="blocked", scope="acme")
    held = {1: live.current}
    stop, errors = threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            dl = live.current
            if {p for p in IDS if p in dl} != set(members[dl.version]):
                errors.append(f"version {dl.version} answered wrongly")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        live.apply_signed(snapshot(members[2], 2), TRUST)
        held[2] = live.current
        for version in range(3, 9):
            old, new = set(members[version - 1]), set(members[version])
            live.apply_signed(delta(version - 1, sorted(new - old), sorted(old - new)), TRUST)
            held[version] = live.current
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors
    assert all(isinstance(backing(dl), mmap.mmap) for dl in held.values())
    assert deleted_mappings(tmp_path) == [f"{path} (deleted)"]  # one line per replaced file: all alike
    for version, dl in held.items():
        assert dl.version == version and {p for p in IDS if p in dl} == set(members[version])
    del dl
    held.clear()
    gc.collect()
    assert deleted_mappings(tmp_path) == [] and open_files(tmp_path) == [str(path)]
    assert live.current.version == 8


def test_read_header_takes_bytes_too(tmp_path: Path) -> None:
    data = delta(4, adds=IDS[10:13], removes=IDS[:2])
    (tmp_path / "d.pgdl").write_bytes(data)
    assert denylist.read_header(data, TRUST) == denylist.read_header(tmp_path / "d.pgdl", TRUST)
