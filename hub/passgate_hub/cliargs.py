"""What the commands read from their arguments beyond argparse's values: the same in both of
``passgate-hub``'s modes, on the database (``cli``) and through the admin API (``remote``)."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from . import ops


def pass_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.pass_ids)
    if args.file:
        ids += [line.strip() for line in Path(args.file).read_text().splitlines() if line.strip()]
    return ids


def empty_file(args: argparse.Namespace, kind: str) -> dict[str, Any] | None:
    """The answer to ``revoke|block|unblock --file F`` with nothing in F and no ids besides: nothing to
    change, not an error (a pull's ``ids/unblocked.txt`` is empty most days; cron must not fail)."""
    if args.file and not args.pass_ids and not pass_ids(args):
        return {"kind": kind, "changed": 0, "detail": f"{args.file} holds no pass ids: nothing changed"}
    return None


def setting_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def settings_given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line; ``--unset`` ones as ``None``."""
    unset = [name.replace("-", "_") for name in getattr(args, "unset", [])]
    given = {name: getattr(args, name) for name in ops.GATE_SETTINGS if getattr(args, name) is not None}
    both = [name for name in unset if name in given]
    if both:
        raise ops.Invalid(f"{setting_flag(both[0])} is both given and unset")
    return {**given, **dict.fromkeys(unset)}


def pass_texts(files: list[str]) -> list[str]:
    """Pass texts from files (``-``: stdin): one a line, or a CSV with a ``text`` column (what
    ``passgate issue --out`` writes)."""
    texts = []
    for name in files:
        lines = (sys.stdin.read() if name == "-" else Path(name).read_text()).splitlines()
        if lines and "," in lines[0]:
            rows = list(csv.DictReader(lines))
            if not rows or "text" not in rows[0]:
                raise ops.Invalid(f"{name}: a CSV needs a text column")
            texts += [row["text"] for row in rows]
        else:
            texts += lines
    return texts
