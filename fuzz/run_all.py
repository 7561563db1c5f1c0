"""Run every atheris harness for N inputs, one after another, and print the figures.

Each target runs in its own child process (libFuzzer owns the process and exits it), one at a time
so a long run takes one core. Per target: inputs executed, crashes, inputs that verified without
a valid signature (forgeries) and exec/s. Exits 1 on any crash or forgery; the failing input is
kept in ``fuzz/findings/NAME/`` (replay it with ``python -m fuzz.fuzz_NAME FILE``).

    python -m fuzz.run_all --inputs 1000000            # per target
    python -m fuzz.run_all --inputs 20000 --targets cose base45
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fuzz.common import START_MARK, TARGETS
from fuzz.make_corpus import make_corpus

ROOT = Path(__file__).resolve().parent.parent
FINDINGS = ROOT / "fuzz" / "findings"
_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_START = re.compile(re.escape(START_MARK) + r"([0-9.]+)")
_PROGRESS = re.compile(r"^#(\d+)\s", re.MULTILINE)


@dataclass(frozen=True)
class Result:
    """What one target's run produced."""

    target: str
    inputs: int
    crashes: int
    forgeries: int
    exec_per_s: int
    seconds: float  # fuzzing time, without the start-up instrumentation

    @property
    def ok(self) -> bool:
        return not self.crashes and not self.forgeries


def _executed(log: str) -> int:
    """libFuzzer's final count, or its last progress line when a crash cut the run short."""
    final = _EXECUTED.search(log)
    if final:
        return int(final.group(1))
    progress = _PROGRESS.findall(log)
    return int(progress[-1]) if progress else 0


def run_target(target: str, inputs: int, seeds: Path, *, seed: int = 1) -> Result:
    """Fuzz one target for ``inputs`` executions starting from its seed corpus."""
    artifacts = FINDINGS / target
    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"passgate-fuzz-{target}-") as work:
        command = [sys.executable, "-m", f"fuzz.fuzz_{target}", f"-runs={inputs}", f"-seed={seed}",
                   "-print_final_stats=1", "-timeout=30", "-rss_limit_mb=2048",
                   f"-artifact_prefix={artifacts}/", work, str(seeds)]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, errors="replace")
        end = time.time()
    log = proc.stderr + proc.stdout
    found = sorted(artifacts.iterdir())
    if not found:
        artifacts.rmdir()
    else:
        (artifacts / "log.txt").write_text(log)
    started = _START.search(log)
    seconds = end - float(started.group(1)) if started else 0.0
    inputs = _executed(log)
    forgery = "Forgery:" in log
    crashed = proc.returncode != 0 or bool(found)
    return Result(
        target=target,
        inputs=inputs,
        crashes=int(crashed and not forgery),
        forgeries=int(forgery),
        exec_per_s=round(inputs / seconds) if seconds > 0 else 0,
        seconds=seconds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="passgate-fuzz-seeds-") as tmp:
        corpora = make_corpus(Path(tmp))
        print(f"{'target':12} {'inputs':>10} {'crashes':>8} {'forgeries':>10} {'exec/s':>8} {'time':>8}")
        results = []
        for target in args.targets:
            result = run_target(target, args.inputs, corpora[target], seed=args.seed)
            results.append(result)
            print(f"{target:12} {result.inputs:>10,} {result.crashes:>8} {result.forgeries:>10} "
                  f"{result.exec_per_s:>8,} {result.seconds:>7.0f}s", flush=True)
    total = sum(r.inputs for r in results)
    crashes, forgeries = sum(r.crashes for r in results), sum(r.forgeries for r in results)
    seconds = sum(r.seconds for r in results)
    print(f"{'total':12} {total:>10,} {crashes:>8} {forgeries:>10} {round(total / max(seconds, 1e-9)):>8,} "
          f"{seconds:>7.0f}s")
    for result in results:
        if not result.ok:
            print(f"FAILED {result.target}: see {FINDINGS / result.target}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
