"""Deny-list benchmark: the gate's lists mapped from their files against the in-memory path.

    .venv/bin/python benchmarks/denylist.py [--sizes 1000000,10000000,50000000] [--runs 3]
                                            [--delta 100000] [--no-gate]

For each size the parent writes the files (the gate's local list, a signed snapshot of as many
entries, a signed delta of ``--delta`` entries, half adds and half removes, and probe ids), then
runs each case in a fresh child process, so that each peak RSS is that case's alone (VmHWM, reset
through ``/proc/self/clear_refs`` just before the measured step):

- ``lookup``: ``DenyList.map`` (the gate's load: checksum, order and bucket index, then the file
  mapped) and ``DenyList.load`` of the same list, then single lookups of 100,000 listed and
  100,000 unlisted ids, each timed with ``perf_counter_ns`` (the timer's own cost is printed and
  included), after a first pass that is not counted. The paths take turns, three passes each, so
  that a change in the machine's load falls on all (the figure is the median of the three); a third
  path maps a copy made by ``sendfile``, which the page cache holds in 4 KiB pages;
- ``snapshot``: ``LiveDenyList.apply_signed(file)`` of the signed snapshot, the list in force
  mapped and resident: peak RSS and time;
- ``delta``: the same with the signed delta; then the same lookups on the new list, whose pages
  this process has not touched yet (page-cache hits: a minor fault per page mapped);
- ``gate``: ``passgated run`` with the list (its own file, ``[denylist] lists = ["blocked"]``), RSS
  at systemd's READY=1, beside the same gate without a list.

Baseline in the same run, the in-memory path (how the gate held its lists before): ``DenyList.load``
reads the list into anonymous memory; a snapshot is ``read_signed`` into memory and saved; a delta
is ``read_signed``, ``DenyList.apply`` (a second array) and saved. Times are medians of ``--runs``
runs, with the range; the page cache is warm. Goals (issue "Fleet scale"): peak memory while an
update applies = the list's own size (entries and index) + a few MiB; at 50 M entries lookup p99
≤ 3 µs and a 100 k delta ≤ 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

PROBES = 100_000
CASES = ("lookup", "snapshot", "snapshot-memory", "delta", "delta-memory")
ROUNDS = 3  # timed passes of each path, alternating


# --- measuring -------------------------------------------------------------------------------


def rss_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM (MiB) of a process, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def reset_peak() -> None:
    """Start VmHWM afresh at the current RSS, so a peak is the measured step's alone."""
    Path("/proc/self/clear_refs").write_text("5")


def lookup_stats(contains, probes: list[bytes]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median and p99 of single lookups (ns, timer included). The times go into a preallocated
    ``array``: a list of 100,000 int objects grew the allocator during the pass, and the page
    faults that took added 1-2 µs to the p99 of the first pass of a process, either path."""
    clock = time.perf_counter_ns
    times = array("q", bytes(8 * len(probes)))
    for i, pass_id in enumerate(probes):
        start = clock()
        contains(pass_id)
        times[i] = clock() - start
    ordered = sorted(times)
    return {"p50_ns": statistics.median(ordered), "p99_ns": ordered[int(len(ordered) * 0.99)]}


def read_probes(work: Path) -> tuple[list[bytes], list[bytes]]:
    raw = (work / "probes.bin").read_bytes()
    ids = [raw[i : i + 16] for i in range(0, len(raw), 16)]
    return ids[:PROBES], ids[PROBES:]


def probe(dl: Any, work: Path, prefix: str = "") -> dict[str, float]:
    """Lookup times of the listed and the unlisted probes, then a check of every answer."""
    hits, misses = read_probes(work)
    stats = {f"{prefix}hit_{k}": v for k, v in lookup_stats(dl.__contains__, hits).items()}
    stats.update({f"{prefix}miss_{k}": v for k, v in lookup_stats(dl.__contains__, misses).items()})
    assert all(p in dl for p in hits) and not any(p in dl for p in misses)
    return stats


def huge_mapped_mb(path: Path) -> float:
    """How much of this process's mapping of ``path`` the kernel maps with 2 MiB pages (MiB)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if "-" in line.split(" ", 1)[0]:  # a mapping's first line
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("FilePmdMapped:"):
                total += int(line.split()[1])
    return total / 1024


# --- one case, in a fresh process --------------------------------------------------------------


def child(case: str, work: Path, out: Path) -> dict[str, float]:
    """One case (see the module's docstring); its results as JSON-ready numbers."""
    from passgate.denylist import DenyList, LiveDenyList, read_signed
    from passgate.keys import TrustStore

    trust = TrustStore.load(work / "trust")
    before = rss_mb()["VmRSS"]
    result = {"rss_before_list_mb": before}
    in_memory = case.endswith("-memory")
    if not in_memory:  # the gate's own copy, which an update replaces (and then deletes)
        with open(work / "list.pgdl", "rb") as src, open(out / "list.pgdl", "wb") as dst:
            shutil.copyfileobj(src, dst, 2 << 20)  # in aligned 2 MiB writes, as the gate writes
            os.fsync(dst.fileno())
    start = time.perf_counter()
    if in_memory:
        held = DenyList.load(work / "list.pgdl")
    else:
        live = LiveDenyList(out / "list.pgdl", kind="blocked", scope="bench")
        held = live.current
    result["load_s"] = time.perf_counter() - start
    result["rss_held_mb"] = rss_mb()["VmRSS"] - before
    if case == "lookup":
        return result | compare_lookups(held, work, out)
    source = work / ("snapshot.pgdl" if case.startswith("snapshot") else "delta.pgdl")
    os.sync()  # no writeback or discards of earlier cases' files during the measured step
    reset_peak()
    start = time.perf_counter()
    if in_memory:
        update = read_signed(source, trust)
        new = update if isinstance(update, DenyList) else held.apply(update)
        new.save(out / "next.pgdl")
    else:
        new = live.apply_signed(source, trust)
    result["apply_s"] = time.perf_counter() - start
    result["peak_mb"] = rss_mb()["VmHWM"] - before
    result["update_mb"] = result["peak_mb"] - result["rss_held_mb"]
    start = time.perf_counter()
    del held  # the old list: unmapped, and its replaced file deleted (the gate does it in apply)
    result["release_s"] = time.perf_counter() - start
    result["rss_after_mb"] = rss_mb()["VmRSS"] - before
    if case == "delta":  # the first lookups on the new list, which also map the pages they touch
        result.update(probe(new, work, "fresh_"))
    return result


def compare_lookups(mapped: Any, work: Path, out: Path) -> dict[str, float]:
    """Lookups through the mapping, through the same list loaded into memory, and through a
    mapping of a copy made by ``sendfile`` (which the page cache holds in 4 KiB pages, as every
    list file on kernels whose ext4 has no large folios, before 6.16), taking turns."""
    from passgate.denylist import DenyList

    start = time.perf_counter()
    loaded = DenyList.load(work / "list.pgdl")
    result = {"memory_load_s": time.perf_counter() - start,
              "huge_mapped_mb": huge_mapped_mb(out / "list.pgdl")}
    shutil.copyfile(work / "list.pgdl", out / "small-pages.pgdl")
    small = DenyList.map(out / "small-pages.pgdl")
    result["small_huge_mapped_mb"] = huge_mapped_mb(out / "small-pages.pgdl")
    rounds: dict[str, list[dict[str, float]]] = {"": [], "memory_": [], "small_": []}
    for _ in range(ROUNDS + 1):  # the first round warms caches and page tables, not counted
        for prefix, dl in (("", mapped), ("memory_", loaded), ("small_", small)):
            rounds[prefix].append(probe(dl, work, prefix))
    for stats in rounds.values():
        for key in stats[0]:
            result[key] = statistics.median(s[key] for s in stats[1:])
    result["timer_ns"] = statistics.median(
        [-(time.perf_counter_ns() - time.perf_counter_ns()) for _ in range(1000)])
    return result


# --- preparing the files -------------------------------------------------------------------------


def prepare(work: Path, entries: int, delta_size: int) -> None:
    import numpy as np

    from passgate.denylist import Delta, DenyList, entry_key
    from passgate.keys import generate_private_key, write_keypair

    rng = np.random.default_rng(entries)

    def random_keys(count: int, avoid: np.ndarray | None = None) -> np.ndarray:
        """``count`` or fewer random entries, sorted and unique (a sort: numpy's hashing
        ``unique`` takes minutes at 50 M), none of them in the sorted ``avoid``."""
        keys = np.sort(rng.integers(0, 2**64, count, dtype=np.uint64))
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
        if avoid is not None and len(avoid):
            at = np.minimum(np.searchsorted(avoid, keys), len(avoid) - 1)
            keys = keys[avoid[at] != keys]
        return keys

    hits = [bytes(row) for row in rng.integers(0, 256, (PROBES, 16), dtype=np.uint8)]
    misses = [bytes(row) for row in rng.integers(0, 256, (PROBES, 16), dtype=np.uint8)]
    (work / "probes.bin").write_bytes(b"".join(hits + misses))
    hit_keys = np.sort(np.array([entry_key(p) for p in hits], dtype=np.uint64))
    keys = np.sort(np.concatenate([random_keys(entries - PROBES, hit_keys), hit_keys]))
    now = int(time.time())
    DenyList(keys, kind="blocked", scope="bench", version=1, issued_at=now).save(work / "list.pgdl")
    key = generate_private_key()
    write_keypair(key, work / "trust", "lists")
    (work / "trust" / "trust.toml").write_text(
        '[[key]]\nfile = "lists.pub.pem"\npurpose = "denylist"\nscope = "bench"\n')
    snapshot = DenyList(random_keys(len(keys)), kind="blocked", scope="bench", version=2, issued_at=now)
    (work / "snapshot.pgdl").write_bytes(snapshot.to_signed(key))
    del snapshot
    adds = random_keys(delta_size // 2, keys)
    at = rng.choice(len(keys), delta_size - len(adds) + PROBES, replace=False)
    removes = np.setdiff1d(keys[at], hit_keys)[: delta_size - len(adds)]  # the hits stay listed
    (work / "delta.pgdl").write_bytes(Delta("blocked", "bench", 1, now, adds, removes).to_signed(key))


def own_size_mb(entries: int) -> tuple[float, float]:
    """A list's entries and its bucket index (MiB)."""
    bits = max(0, min(24, entries.bit_length() - 4))
    return entries * 8 / 2**20, ((1 << bits) + 1) * 4 / 2**20


# --- the whole gate ----------------------------------------------------------------------------


def gate_rss(root: Path) -> dict[str, float]:
    """RSS of ``passgated run`` with the config in ``root`` at READY=1."""
    address = root / "notify.sock"
    address.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(300)
        child = subprocess.Popen(
            [sys.executable, "-m", "passgated.cli", "run", "--config", str(root / "gate.toml")],
            env={**os.environ, "NOTIFY_SOCKET": str(address)}, stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
        try:
            while sock.recv(256) != b"READY=1":
                pass
            return rss_mb(child.pid)
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=60)


def write_gate(root: Path, list_file: Path | None) -> None:
    from passgate.keys import generate_private_key, write_keypair

    root.mkdir()
    write_keypair(generate_private_key(), root / "trust", "issuer")
    config = ('[trust]\ndir = "trust"\n[journal]\npath = "journal.db"\n[display]\nlisten = false\n'
              '[[scanner]]\nsource = "stdin:"\n')
    if list_file is not None:
        (root / "lists").mkdir()
        os.link(list_file, root / "lists" / "blocked.pgdl")
        config += '[denylist]\ndir = "lists"\nscope = "bench"\nlists = ["blocked"]\n'
    (root / "gate.toml").write_text(config)


# --- the run -----------------------------------------------------------------------------------


def run_child(case: str, work: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=work) as out:
        done = subprocess.run([sys.executable, __file__, "--child", case, "--work", str(work),
                               "--out", out], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000,50000000",
                        help="comma-separated entry counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delta", type=int, default=100_000, help="adds + removes")
    parser.add_argument("--no-gate", action="store_true", help="skip the passgated run figures")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.work, args.out)))
        return 0
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; medians of {args.runs} "
          f"runs (range); page cache warm\n")
    with tempfile.TemporaryDirectory(prefix="pgdl-bench-") as tmp:
        bare: list[dict[str, float]] = []
        if not args.no_gate:
            write_gate(Path(tmp) / "bare-gate", None)
            bare = [gate_rss(Path(tmp) / "bare-gate") for _ in range(args.runs)]
            print(f"passgated run without a list, at READY: {gate_figures(bare)}\n")
        for entries in (int(size) for size in args.sizes.split(",")):
            work = Path(tmp) / str(entries)
            work.mkdir()
            start = time.perf_counter()
            prepare(work, entries, args.delta)
            print(f"== {entries:,} entries (prepared in {time.perf_counter() - start:.0f} s)")
            results: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
            for _ in range(args.runs):
                for case in CASES:
                    results[case].append(run_child(case, work))
            report(entries, results)
            if not args.no_gate:
                write_gate(work / "gate", work / "list.pgdl")
                gates = [gate_rss(work / "gate") for _ in range(args.runs)]
                print(f"  passgated run with the list, at READY: {gate_figures(gates)}")
                grown = statistics.median(g["VmRSS"] for g in gates) - statistics.median(
                    b["VmRSS"] for b in bare)
                print(f"  ... {grown:.1f} MiB more than without a list")
            print()
            shutil.rmtree(work)
    return 0


def gate_figures(runs: list[dict[str, float]]) -> str:
    return (f"RSS {show([r['VmRSS'] for r in runs], '.1f')} MiB (anonymous "
            f"{show([r['RssAnon'] for r in runs], '.1f')}, file-backed "
            f"{show([r['RssFile'] for r in runs], '.1f')}), peak {show([r['VmHWM'] for r in runs], '.1f')}")


def show(values: list[float], fmt: str) -> str:
    """The median and the range of some runs."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:{fmt}} ({low:{fmt}}–{high:{fmt}})"


def report(entries: int, results: dict[str, list[dict[str, float]]]) -> None:
    keys_mb, index_mb = own_size_mb(entries)
    own = keys_mb + index_mb
    lookups = results["lookup"]
    print(f"  the list's own size: {own:.1f} MiB (entries {keys_mb:.1f} MiB, bucket index "
          f"{index_mb:.1f} MiB); RSS before any list "
          f"{statistics.median(r['rss_before_list_mb'] for r in lookups):.1f} MiB; "
          f"timer {statistics.median(r['timer_ns'] for r in lookups):.0f} ns (in the lookup times)")

    def row(label: str, case: str, key: str, fmt: str, scale: float = 1.0, memory_key: str = "") -> None:
        mapped = [r[key] * scale for r in results[case]]
        memory = ([r[memory_key] * scale for r in results[case]] if memory_key else
                  [r[key] * scale for r in results[f"{case}-memory"]])
        ratio = statistics.median(mapped) / statistics.median(memory)
        print(f"  {label:44} {show(mapped, fmt):>24} {show(memory, fmt):>24} {ratio:>7.2f}x")

    print(f"  {'':44} {'mapped (the gate)':>24} {'in memory (baseline)':>24} {'ratio':>8}")
    row("load (s)", "lookup", "load_s", ".3f", memory_key="memory_load_s")
    for kind in ("hit", "miss"):
        for stat in ("p50", "p99"):
            key = f"{kind}_{stat}_ns"
            row(f"lookup {kind} {stat} (µs)", "lookup", key, ".2f", 1e-3, memory_key=f"memory_{key}")
    for kind in ("hit", "miss"):
        for stat in ("p50", "p99"):
            key = f"{kind}_{stat}_ns"
            row(f"  the same, 4 KiB pages: {kind} {stat} (µs)", "lookup", f"small_{key}", ".2f", 1e-3,
                memory_key=f"memory_{key}")

    def median(key: str) -> float:
        return statistics.median(r[key] for r in lookups)

    print(f"  RSS holding the mapped list {median('rss_held_mb'):.1f} MiB, of it mapped with 2 MiB "
          f"pages {median('huge_mapped_mb'):.1f} MiB ({median('small_huge_mapped_mb'):.1f} MiB of the "
          f"sendfile copy)")
    for case, label in (("snapshot", "snapshot from a file"), ("delta", "delta from a file")):
        row(f"{label}: apply (s)", case, "apply_s", ".3f")
        row(f"{label}: peak RSS − before any list (MiB)", case, "peak_mb", ".1f")
        row(f"{label}: peak RSS − holding the list (MiB)", case, "update_mb", ".1f")
        row(f"{label}: RSS after, old list dropped (MiB)", case, "rss_after_mb", ".1f")
        row(f"{label}: dropping the old list (s)", case, "release_s", ".3f")
    fresh = results["delta"]
    print(f"  lookups on the new list right after the delta, p50 / p99 (µs): hits "
          f"{show([r['fresh_hit_p50_ns'] / 1e3 for r in fresh], '.2f')} / "
          f"{show([r['fresh_hit_p99_ns'] / 1e3 for r in fresh], '.2f')}, misses "
          f"{show([r['fresh_miss_p50_ns'] / 1e3 for r in fresh], '.2f')} / "
          f"{show([r['fresh_miss_p99_ns'] / 1e3 for r in fresh], '.2f')}")

    def beyond(cases: tuple[str, str]) -> float:
        return max(r["peak_mb"] for case in cases for r in results[case]) - own

    print(f"  peak while applying, beyond the list's own size (highest run): mapped "
          f"{beyond(('snapshot', 'delta')):.1f} MiB, in memory "
          f"{beyond(('snapshot-memory', 'delta-memory')):.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
