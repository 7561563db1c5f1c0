"""Deny-list files that are damaged, truncated, hostile or huge: refused with the right one-line
error, quickly and without the memory they claim; and ``rebuild`` from the files a gate kept."""

from __future__ import annotations

import hashlib
import os
import random
import resource
import threading
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

KEY = generate_private_key()
OTHER_KEY = generate_private_key()  # never trusted
TRUST = TrustStore()
TRUST.add(KEY.public_key())
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


def test_every_bit_flip_of_a_local_file_is_a_corrupt_file(tmp_path: Path) -> None:
    original = local_file(tmp_path / "whole.pgdl", IDS[:3])
    path = tmp_path / "flipped.pgdl"
    for bit in range(len(original) * 8):
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(flipped)
        with pytest.raises(CorruptFileError):
            DenyList.load(path)


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
