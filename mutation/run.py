"""Mutation testing of the gate's safety modules: does each module's own test file notice when the
code changes?

    python mutation/run.py                  # every target; a few minutes each
    python mutation/run.py policy machine   # some targets
    python mutation/run.py journal --survivors   # only the mutants that survived last time

For each target (a module, or a few functions of one, and the test files that are its own), the
runner makes every mutant (``mutation/mutants.py`` says which changes), runs the target's tests
against each one in a copy of the tree, and prints mutants, killed, survived and the score
(killed / all). A mutant is killed when a test fails, the tests cannot even be collected, or they run
past a time limit (an endless loop). Survivors that cannot change behaviour are listed with the
reason in ``mutation/equivalent.toml``; any other survivor is printed with its diff and makes the
exit status 1. Results go to ``mutation/.results/`` (not committed). Not part of the default suite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mutants import Mutant, find, iter_keys

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / ".results"
EQUIVALENT = Path(__file__).parent / "equivalent.toml"
COPIED = ("sdk", "firmware", "hub", "tests", "setup.cfg", "pyproject.toml")


@dataclass(frozen=True)
class Target:
    modules: tuple[str, ...]  # "path" or "path::function,function"
    tests: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()


TARGETS: dict[str, Target] = {
    "policy": Target(("firmware/passgated/policy.py",), ("tests/firmware/test_policy.py",)),
    "machine": Target(("firmware/passgated/machine.py",), ("tests/firmware/test_machine.py",)),
    "passes": Target(("sdk/passgate/passes.py", "sdk/passgate/cose.py", "sdk/passgate/base45.py"),
                     ("tests/sdk/test_passes.py", "tests/sdk/test_cose.py", "tests/sdk/test_base45.py",
                      "tests/sdk/test_reference_vectors.py")),
    "journal": Target(("firmware/passgated/journal.py",), ("tests/firmware/test_journal.py",)),
    "denylist": Target(("sdk/passgate/denylist.py",),
                       ("tests/sdk/test_denylist.py", "tests/sdk/test_denylist_files.py",
                        "tests/sdk/test_reference_vectors.py")),
    "sync": Target(("firmware/passgated/sync.py::_upload,_upload_one_by_one,_pull_redemptions",),
                   ("tests/firmware/test_sync.py", "tests/firmware/test_sync_poison.py"),
                   ("-k", "not postgresql")),
}


def mutants_of(target: Target) -> list[tuple[str, Mutant]]:
    found: list[tuple[str, Mutant]] = []
    for spec in target.modules:
        path, _, names = spec.partition("::")
        only = set(names.split(",")) if names else None
        found += list(iter_keys(find(ROOT / path, root=ROOT, only=only)))
    return found


class Worker:
    """A copy of the tree in which one mutant at a time is applied and the tests run."""

    def __init__(self, base: Path, n: int) -> None:
        self.root = base / f"worker-{n}"
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, self.root / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis"))
            else:
                shutil.copy(source, self.root / name)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            str(self.root / part) for part in ("sdk", "firmware", "hub")), "PYTHONDONTWRITEBYTECODE": "1",
            "PASSGATE_MUTATION": "1"}

    def run(self, target: Target, mutant: Mutant | None, timeout: float) -> tuple[str, float]:
        """('killed' | 'survived' | 'timeout' | 'passed' (no mutant) | 'failed' (no mutant)), seconds."""
        path = self.root / mutant.path if mutant else None
        original = path.read_text() if path else ""
        if mutant and path:
            path.write_text(mutant.apply(original))
        started = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header",
                 "-o", "addopts=", *target.pytest_args, *target.tests],
                cwd=self.root, env=self.env, capture_output=True, timeout=timeout,
            )
            code = result.returncode
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            if mutant and path:
                path.write_text(original)
        took = time.monotonic() - started
        if mutant is None:
            return ("passed" if code == 0 else "failed"), took
        if code == -1:
            return "timeout", took
        return ("survived" if code == 0 else "killed"), took


def load_equivalent() -> dict[str, str]:
    if not EQUIVALENT.exists():
        return {}
    data = tomllib.loads(EQUIVALENT.read_text())
    return {entry["mutant"]: entry["why"] for entry in data.get("mutant", [])}


def run_target(name: str, target: Target, workers: list[Worker], *,
               survivors_only: bool) -> dict[str, object]:
    baseline, took = workers[0].run(target, None, timeout=600)
    if baseline != "passed":
        raise SystemExit(f"{name}: the tests fail without any mutant; fix them first")
    timeout = max(20.0, took * 4)
    mutants = mutants_of(target)
    previous = RESULTS / f"{name}.json"
    if survivors_only and previous.exists():
        last = json.loads(previous.read_text())
        keep = set(last["survived"])
        outcome = {key: "killed" for key in last["killed"]}
        mutants = [(key, m) for key, m in mutants if key in keep or key not in last["all"]]
    else:
        outcome = {}
    lock = threading.Lock()
    free = list(workers)

    def one(item: tuple[str, Mutant]) -> tuple[str, str]:
        with lock:
            worker = free.pop()
        try:
            result, _ = worker.run(target, item[1], timeout)
        finally:
            with lock:
                free.append(worker)
        return item[0], result

    done = 0
    total = len(mutants)
    tty = sys.stderr.isatty()
    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        for key, result in pool.map(one, mutants):
            outcome[key] = result
            done += 1
            if tty:
                print(f"\r{name}: {done}/{total} mutants run", end="", file=sys.stderr, flush=True)
            elif done % 50 == 0 or done == total:
                print(f"{name}: {done}/{total} mutants run", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    every = mutants_of(target)
    by_key = dict(every)
    survived = sorted(k for k, r in outcome.items() if r == "survived" and k in by_key)
    killed = sorted(k for k, r in outcome.items() if r in ("killed", "timeout") and k in by_key)
    RESULTS.mkdir(exist_ok=True)
    previous.write_text(json.dumps({"all": sorted(by_key), "survived": survived, "killed": killed}, indent=1))
    return {"mutants": len(by_key), "killed": len(killed), "survived": survived, "by_key": by_key}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"some of: {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--survivors", action="store_true", help="only re-run last time's survivors")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args()
    names = args.targets or list(TARGETS)
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (known: {', '.join(TARGETS)})")
    if args.list:
        for name in names:
            for key, mutant in mutants_of(TARGETS[name]):
                print(f"{name}\t{mutant.path}:{mutant.line}\t{key}")
        return 0
    equivalent = load_equivalent()
    status = 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="passgate-mutation-") as tmp:
        workers = [Worker(Path(tmp), n) for n in range(args.jobs)]
        for name in names:
            started = time.monotonic()
            report = run_target(name, TARGETS[name], workers, survivors_only=args.survivors)
            survived: list[str] = report["survived"]  # type: ignore[assignment]
            unexplained = [k for k in survived if k not in equivalent]
            total, killed = int(report["mutants"]), int(report["killed"])  # type: ignore[call-overload]
            score = killed / total if total else 1.0
            rows.append((name, total, killed, len(survived), len(survived) - len(unexplained), score,
                         time.monotonic() - started))
            by_key: dict[str, Mutant] = report["by_key"]  # type: ignore[assignment]
            for key in unexplained:
                mutant = by_key[key]
                print(f"SURVIVED {mutant.path}:{mutant.line} [{mutant.operator}] {mutant.scope}: "
                      f"{' '.join(mutant.original.split())!r} -> {' '.join(mutant.text.split())!r}")
                print(f"    key: {key}")
            if unexplained or score < 0.95:
                status = 1
    print()
    print(f"{'target':10} {'mutants':>8} {'killed':>8} {'survived':>9} {'equivalent':>11} {'score':>7} "
          f"{'time':>7}")
    for name, total, killed, survived_n, equivalent_n, score, took in rows:
        print(f"{name:10} {total:8} {killed:8} {survived_n:9} {equivalent_n:11} {score:7.1%} {took:6.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
