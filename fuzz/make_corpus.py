"""Write each harness's seed inputs to ``fuzz/corpus/NAME/`` (generated, never committed).

Seeds are real passes, signed deny lists, configs and scanner streams built by the harness
modules themselves with the fixed fuzzing keys, so the corpus always matches the current formats.

    python -m fuzz.make_corpus [--out fuzz/corpus]
"""

from __future__ import annotations

import argparse
import importlib
import shutil
from pathlib import Path

from fuzz.common import TARGETS

CORPUS = Path(__file__).resolve().parent / "corpus"


def make_corpus(out: Path = CORPUS) -> dict[str, Path]:
    """(Re)write one directory of seed files per target; returns target: directory."""
    dirs = {}
    for target in TARGETS:
        harness = importlib.import_module(f"fuzz.fuzz_{target}")
        directory = out / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, data in harness.seeds().items():
            (directory / name).write_bytes(data)
        dirs[target] = directory
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS)
    args = parser.parse_args()
    for target, directory in make_corpus(args.out).items():
        print(f"{target:12} {len(list(directory.iterdir())):3} seeds in {directory}")


if __name__ == "__main__":
    main()
