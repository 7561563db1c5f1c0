"""The ``passgated`` command (the gate daemon's subcommands arrive with the gate)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="passgated", description="The passgate gate daemon.")
    parser.add_argument("--version", action="version", version=f"passgated {__version__}")
    parser.parse_args(argv)
    print(f"passgated {__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
