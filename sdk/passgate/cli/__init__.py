"""The ``passgate`` command: one subcommand module per concept, each with ``register(subparsers)``.

Every expected failure (bad argument, unreadable file, bad key) is a one-line error and exit 2;
a traceback is always a bug.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..keys import KeyFileError
from . import decode, denylist, keys, passes, pretix
from .common import CliError

COMMAND_MODULES = (keys, passes, denylist, decode, pretix)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passgate", description="Issue, verify and read signed passgate passes."
    )
    parser.add_argument("--version", action="version", version=f"passgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CliError, KeyFileError, OSError, ValueError) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        filename = getattr(exc, "filename", None)
        if filename:
            message = f"{filename}: {message}"
        print(f"passgate {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0

