"""Deny list benchmark: 10 M entries, DenyList against a Python ``set`` of 16-byte hashes.

    .venv/bin/python benchmarks/denylist.py [--entries 10000000] [--delta 100000]

The parent prepares the files (local list, signed delta, raw hashes for the set, probe ids), then
runs each variant in its own child process so RSS is per variant. Per-lookup times are measured one
call at a time with ``perf_counter_ns`` (the timer's own cost is printed and included); the bulk
mean is the loop time divided by the count. Goals: ≤ 100 MB, p99 ≤ 3 µs, load ≤ 1 s, delta ≤ 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBES = 100_000


def rss_mb() -> float:
    """Current resident set size (MB), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    """Peak RSS (MB) of this process image: VmHWM, since ru_maxrss survives exec from the parent."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def lookup_stats(contains, probes: list[bytes]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median / p99 of single lookups (ns, timer included) and the bulk mean."""
    clock = time.perf_counter_ns
    times = []
    for pass_id in probes:
        start = clock()
        contains(pass_id)
        times.append(clock() - start)
    start = time.perf_counter()
    for pass_id in probes:
        contains(pass_id)
    mean = (time.perf_counter() - start) / len(probes) * 1e9
    times.sort()
    return {"median_ns": statistics.median(times), "p99_ns": times[int(len(times) * 0.99)],
            "mean_ns": mean}


def read_probes(work: Path) -> tuple[list[bytes], list[bytes]]:
    raw = (work / "probes.bin").read_bytes()
    ids = [raw[i : i + 16] for i in range(0, len(raw), 16)]
    return ids[:PROBES], ids[PROBES:]


def child_denylist(work: Path) -> dict[str, float]:
    from passgate.denylist import DenyList, read_signed
    from passgate.keys import TrustStore

    hits, misses = read_probes(work)
    trust = TrustStore.load(work / "issuer.pub.pem")
    base = rss_mb()
    start = time.perf_counter()
    dl = DenyList.load(work / "list.pgdl")
    load_s = time.perf_counter() - start
    held = rss_mb()
    assert all(p in dl for p in hits) and not any(p in dl for p in misses)
    result = {"load_s": load_s, "rss_base_mb": base, "rss_held_mb": held,
              "peak_held_mb": peak_mb()}
    result.update({f"hit_{k}": v for k, v in lookup_stats(dl.__contains__, hits).items()})
    result.update({f"miss_{k}": v for k, v in lookup_stats(dl.__contains__, misses).items()})
    result["timer_ns"] = statistics.median(
        [-(time.perf_counter_ns() - time.perf_counter_ns()) for _ in range(1000)]
    )
    start = time.perf_counter()
    delta = read_signed(work / "delta.pgdl", trust)
    result["delta_verify_s"] = time.perf_counter() - start
    start = time.perf_counter()
    new = dl.apply(delta)  # type: ignore[arg-type]
    result["delta_apply_s"] = time.perf_counter() - start
    start = time.perf_counter()
    new.save(work / "list-next.pgdl")
    result["delta_save_s"] = time.perf_counter() - start
    result["peak_apply_mb"] = peak_mb()
    result["entries"] = len(new)
    return result


def child_set(work: Path) -> dict[str, float]:
    hits, misses = read_probes(work)
    sha = hashlib.sha256
    base = rss_mb()
    start = time.perf_counter()
    raw = (work / "hashes16.bin").read_bytes()
    table = {raw[i : i + 16] for i in range(0, len(raw), 16)}
    del raw
    load_s = time.perf_counter() - start
    held = rss_mb()

    def contains(pass_id: bytes) -> bool:
        return sha(pass_id).digest()[:16] in table

    assert all(contains(p) for p in hits) and not any(contains(p) for p in misses)
    result = {"load_s": load_s, "rss_base_mb": base, "rss_held_mb": held,
              "peak_held_mb": peak_mb()}
    result.update({f"hit_{k}": v for k, v in lookup_stats(contains, hits).items()})
    result.update({f"miss_{k}": v for k, v in lookup_stats(contains, misses).items()})
    delta = (work / "delta16.bin").read_bytes()
    adds_end = int((work / "delta16.count").read_text())
    start = time.perf_counter()
    new = table.copy()  # beside the old one, like DenyList.apply, so readers are never mixed
    new.difference_update(delta[i : i + 16] for i in range(adds_end, len(delta), 16))
    new.update(delta[i : i + 16] for i in range(0, adds_end, 16))
    result["delta_apply_s"] = time.perf_counter() - start
    result["peak_apply_mb"] = peak_mb()
    result["entries"] = len(new)
    return result


def prepare(work: Path, entries: int, delta_size: int) -> None:
    import numpy as np

    from passgate.denylist import DenyList, sign_delta
    from passgate.keys import generate_private_key, public_pem

    rng = np.random.default_rng(2026)
    raw = rng.bytes(16 * entries)
    digests = bytearray()
    for i in range(0, len(raw), 16):
        digests += hashlib.sha256(raw[i : i + 16]).digest()[:16]
    table = np.frombuffer(digests, np.uint8).reshape(entries, 16)
    keys = np.unique(table[:, :8].copy().view("<u8").ravel().astype(np.uint64))
    (work / "hashes16.bin").write_bytes(table.tobytes())
    del table, digests
    DenyList(keys, kind="blocked", scope="bench", version=1, issued_at=int(time.time())).save(
        work / "list.pgdl"
    )
    del keys
    key = generate_private_key()
    (work / "issuer.pub.pem").write_bytes(public_pem(key))
    hit_at = rng.choice(entries, PROBES, replace=False)
    hits = [raw[16 * i : 16 * i + 16] for i in hit_at.tolist()]
    misses = [bytes(row) for row in rng.integers(0, 256, (PROBES, 16), dtype=np.uint8)]
    (work / "probes.bin").write_bytes(b"".join(hits + misses))
    adds = [bytes(row) for row in rng.integers(0, 256, (delta_size // 2, 16), dtype=np.uint8)]
    removes = [raw[16 * i : 16 * i + 16] for i in
               rng.choice(entries, delta_size - len(adds), replace=False).tolist()]
    (work / "delta.pgdl").write_bytes(sign_delta(key, kind="blocked", scope="bench", base=1,
                                                 adds=adds, removes=removes))
    (work / "delta16.bin").write_bytes(
        b"".join(hashlib.sha256(p).digest()[:16] for p in adds + removes)
    )
    (work / "delta16.count").write_text(str(16 * len(adds)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--delta", type=int, default=100_000, help="adds + removes")
    parser.add_argument("--child", choices=("denylist", "set"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = child_denylist if args.child == "denylist" else child_set
        print(json.dumps(run(args.work)))
        return 0
    with tempfile.TemporaryDirectory(prefix="pgdl-bench-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        prepare(work, args.entries, args.delta)
        print(f"prepared {args.entries:,} entries, {args.delta:,}-entry delta in "
              f"{time.perf_counter() - start:.1f} s; list file "
              f"{(work / 'list.pgdl').stat().st_size / 2**20:.1f} MiB")
        results = {}
        for variant in ("denylist", "set"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--work", str(work)],
                check=True, capture_output=True, text=True,
            ).stdout
            results[variant] = json.loads(out)
    report(results)
    return 0


def report(results: dict[str, dict[str, float]]) -> None:
    dl, base = results["denylist"], results["set"]
    rows = [
        ("RSS holding the list, total (MB)", "rss_held_mb", "{:.1f}"),
        ("RSS of the list itself (MB, total − before load)", None, "{:.1f}"),
        ("peak RSS while holding (MB)", "peak_held_mb", "{:.1f}"),
        ("peak RSS incl. delta apply (MB)", "peak_apply_mb", "{:.1f}"),
        ("cold load (s, page cache warm)", "load_s", "{:.3f}"),
        ("lookup hit median (ns)", "hit_median_ns", "{:.0f}"),
        ("lookup hit p99 (ns)", "hit_p99_ns", "{:.0f}"),
        ("lookup hit bulk mean (ns)", "hit_mean_ns", "{:.0f}"),
        ("lookup miss median (ns)", "miss_median_ns", "{:.0f}"),
        ("lookup miss p99 (ns)", "miss_p99_ns", "{:.0f}"),
        ("lookup miss bulk mean (ns)", "miss_mean_ns", "{:.0f}"),
        ("delta apply (s)", "delta_apply_s", "{:.3f}"),
    ]
    print(f"\n{'':50} {'DenyList':>12} {'set':>12} {'DenyList/set':>13}")
    for label, key, fmt in rows:
        if key is None:
            a, b = (r["rss_held_mb"] - r["rss_base_mb"] for r in (dl, base))
        else:
            a, b = dl[key], base[key]
        print(f"{label:50} {fmt.format(a):>12} {fmt.format(b):>12} {a / b:>12.2f}x")
    print(f"\nDenyList only: verify signed delta {dl['delta_verify_s']:.3f} s, atomic save of the "
          f"new list {dl['delta_save_s']:.3f} s; RSS before load {dl['rss_base_mb']:.1f} MB "
          f"(interpreter, numpy, cbor2, cryptography); timer cost {dl['timer_ns']:.0f} ns "
          f"(included in median/p99)")


if __name__ == "__main__":
    sys.exit(main())
