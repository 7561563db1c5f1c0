"""A gate back from a power cut: time from starting ``passgated run`` to systemd's READY=1.

The real daemon in a child process, as systemd starts it (``Type=notify``: READY only after every
input is read and every output is safe), on mock pins, with a 10 M-entry revoked list and a journal
of 1 M passages. Warm (files in the page cache) and cold (``/proc/sys/vm/drop_caches``, when this
process may write it). Baselines in the same run: the same gate with an empty journal and no list,
cold as well, and a bare ``python -c 'import passgated.gate'``. Goal (issue 10): READY within 1 s.

    python benchmarks/boot.py [--entries 10000000] [--passages 1000000] [--runs 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bigjournal import make_journal

from passgate import generate_private_key
from passgate.denylist import DenyList
from passgate.keys import write_keypair


def drop_caches() -> bool:
    """Empty the page cache (root only); False when not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def boot_once(config: Path, *, cold: bool = False) -> float:
    """Seconds from exec to READY=1."""
    with tempfile.TemporaryDirectory() as tmp:
        address = Path(tmp) / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(address))
        sock.settimeout(120)
        env = {**os.environ, "NOTIFY_SOCKET": str(address)}
        if cold:
            drop_caches()
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "passgated.cli", "run", "--config", str(config)],
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            while sock.recv(256) != b"READY=1":
                pass
            ready = time.perf_counter() - started
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=60)
            sock.close()
    return ready


def import_time() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import passgated.gate"], check=True)
    return time.perf_counter() - started


def write_gate(root: Path, *, lists: bool) -> Path:
    write_keypair(generate_private_key(), root / "trust", "issuer")
    config = root / "gate.toml"
    deny = '[denylist]\ndir = "lists"\nscope = "venue"\nlists = ["revoked"]\n' if lists else ""
    config.write_text('[trust]\ndir = "trust"\n[journal]\npath = "journal.db"\n[display]\nlisten = false\n'
                      '[[scanner]]\nsource = "stdin:"\n' + deny)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "empty").mkdir()
        (tmp / "loaded").mkdir()
        empty = write_gate(tmp / "empty", lists=False)
        loaded = write_gate(tmp / "loaded", lists=True)
        big = make_journal(args.cache / f"passgate-bench-journal-{args.passages}.db", args.passages)
        shutil.copy(big, tmp / "loaded" / "journal.db")
        keys = np.unique(np.random.default_rng(7).integers(0, 2**64, args.entries, dtype=np.uint64))
        (tmp / "loaded" / "lists").mkdir()
        DenyList(keys, kind="revoked", scope="venue", version=1, issued_at=int(time.time())).save(
            tmp / "loaded" / "lists" / "revoked.pgdl")
        boot_once(loaded)  # the first start adds the journal's new indexes (a one-time migration)

        imports = [import_time() for _ in range(args.runs)]
        baseline = [boot_once(empty) for _ in range(args.runs)]
        warm = [boot_once(loaded) for _ in range(args.runs)]
        can_drop = drop_caches()
        cold = [boot_once(loaded, cold=True) for _ in range(args.runs)] if can_drop else []
        cold_baseline = [boot_once(empty, cold=True) for _ in range(args.runs)] if can_drop else []

    def show(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})"

    print(f"python -c 'import passgated.gate':             {show(imports)}")
    print(f"READY, empty journal, no list (baseline):       {show(baseline)}")
    print(f"READY, {len(keys):,}-entry list, {args.passages:,}-passage journal, warm: {show(warm)}")
    if cold:
        print(f"READY, the same, cold page cache:               {show(cold)}")
        print(f"READY, empty journal, no list, cold page cache: {show(cold_baseline)}")
        print(f"ratio cold / cold baseline: {statistics.median(cold) / statistics.median(cold_baseline):.2f}")
    else:
        print("cold page cache: not measured (writing /proc/sys/vm/drop_caches needs root)")
    print(f"ratio warm / baseline: {statistics.median(warm) / statistics.median(baseline):.2f} "
          "(goal: READY within 1 s)")


if __name__ == "__main__":
    main()
