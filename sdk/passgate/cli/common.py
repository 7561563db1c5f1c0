"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import sys
from collections.abc import Iterator


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def read_lines(arg: str) -> Iterator[str]:
    """The argument itself, or each non-empty line of stdin when it is ``-``."""
    if arg != "-":
        yield arg
        return
    for line in sys.stdin:
        if line.strip():
            yield line.strip()
