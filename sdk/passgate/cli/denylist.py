"""``passgate denylist build|delta|inspect``: signed revocation and block lists for operators.

Id files hold one hex pass id per line, or are a CSV with a ``pass_id`` column (what
``passgate issue --out`` writes); ``-`` reads stdin. Blank lines and ``#`` comments are skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from ..denylist import (
    KINDS,
    PASS_ID_SIZE,
    Delta,
    DenyList,
    DenyListError,
    atomic_write,
    inspect,
    read_signed,
)
from ..keys import TrustedKey, TrustStore, key_id, load_private_key
from ..passes import iso_utc
from ..pending import PendingList
from ..wire import KeyPurpose
from .common import CliError

Run = Callable[[argparse.Namespace], int]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("denylist", help="build, update and inspect signed deny lists")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    b = actions.add_parser("build", help="a signed snapshot from a file of pass ids")
    b.add_argument("--key", required=True, metavar="PRIV.pem",
                   help="signing private key (gates trust it as a denylist key of --scope)")
    b.add_argument("--kind", required=True, choices=KINDS)
    b.add_argument("--scope", help="list scope (default: the key id in hex)")
    b.add_argument("--version", type=int, default=1, metavar="N", help="default 1")
    b.add_argument("ids", metavar="IDS_FILE", help="hex pass ids, one a line, or CSV; - for stdin")
    b.add_argument("--out", required=True, metavar="FILE", help="signed snapshot to write")
    b.set_defaults(run=_guarded(run_build))

    d = actions.add_parser(
        "delta",
        help="a signed delta taking a snapshot to its next version",
        description="Give --add and/or --remove (changes), or --ids (the complete new list: "
        "the delta is the difference). --snapshot-out also writes the new full snapshot, the "
        "--base of the next delta.",
    )
    d.add_argument("--key", required=True, metavar="PRIV.pem", help="signing private key")
    d.add_argument("--base", required=True, metavar="SNAPSHOT", help="signed snapshot, version N")
    d.add_argument("--trust", metavar="DIR", help="keys to verify --base (default: --key)")
    d.add_argument("--add", metavar="IDS_FILE", help="pass ids to add")
    d.add_argument("--remove", metavar="IDS_FILE", help="pass ids to remove (blocked lists only)")
    d.add_argument("--ids", metavar="IDS_FILE", help="the complete list at version N + 1")
    d.add_argument("--out", required=True, metavar="FILE", help="signed delta to write")
    d.add_argument("--snapshot-out", metavar="FILE", help="also write the version N + 1 snapshot")
    d.set_defaults(run=_guarded(run_delta))

    s = actions.add_parser(
        "sign",
        help="sign a hub's pending list (an offline-issuer venue) where the key lives",
        description="Reads the JSON of 'passgate-hub denylist pending' (or GET .../denylists/KIND/"
        "pending) and writes the signed snapshot and delta to upload back (passgate-hub "
        "denylist upload, or POST .../denylists/signed), snapshot first.",
    )
    s.add_argument("--key", required=True, metavar="PRIV.pem", help="the venue's deny-list private key")
    s.add_argument("pending", metavar="PENDING.json", help="the hub's pending list; - for stdin")
    s.add_argument("--out", required=True, metavar="DIR", help="directory for the two signed files")
    s.set_defaults(run=_guarded(run_sign))

    i = actions.add_parser("inspect", help="print a deny list file's header as JSON")
    i.add_argument("file", metavar="FILE", help="signed snapshot or delta, or a gate's local file")
    i.add_argument("--trust", metavar="DIR", help="verify the signature against these keys")
    i.set_defaults(run=_guarded(run_inspect))


def _guarded(run: Run) -> Run:
    """Deny list errors are the operator's input problems: one line, exit 2, no traceback."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except DenyListError as exc:
            raise CliError(str(exc)) from None

    return guarded


def read_ids(arg: str) -> Iterator[bytes]:
    """Pass ids from a file of hex lines or a CSV with a ``pass_id`` column (``-``: stdin)."""
    if arg == "-":
        yield from _parse_ids(sys.stdin, "stdin")
        return
    with open(arg, newline="") as f:
        yield from _parse_ids(f, arg)


def _parse_ids(stream: TextIO, name: str) -> Iterator[bytes]:
    lines = (line for line in stream if line.strip() and not line.lstrip().startswith("#"))
    first = next(lines, None)
    if first is None:
        return
    if "," in first or first.strip().lower() == "pass_id":
        reader = csv.DictReader(chain([first], lines))
        if "pass_id" not in (reader.fieldnames or ()):
            raise CliError(f"{name}: CSV has no pass_id column")
        for row in reader:
            yield _pass_id(row["pass_id"] or "", name, reader.line_num)
        return
    for number, line in enumerate(chain([first], lines), start=1):
        yield _pass_id(line, name, number)


def _pass_id(text: str, name: str, number: int) -> bytes:
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        value = b""
    if len(value) != PASS_ID_SIZE:
        raise CliError(f"{name}: entry {number}: not a {PASS_ID_SIZE}-byte hex pass id: {text.strip()!r:.50}")
    return value


def _progress(ids: Iterator[bytes], what: str) -> Iterable[bytes]:
    return tqdm(ids, desc=what, unit=" ids", unit_scale=True, disable=None, leave=False)


def _describe(dl: DenyList) -> str:
    return f"{dl.kind} list {dl.scope!r} version {dl.version}, {len(dl)} entries"


def run_build(args: argparse.Namespace) -> int:
    if args.version < 1:
        raise CliError("--version must be at least 1 (0 means 'no list yet' on a gate)")
    key = load_private_key(args.key)
    scope = args.scope if args.scope is not None else key_id(key).hex()
    dl = DenyList.from_ids(
        _progress(read_ids(args.ids), "reading ids"), kind=args.kind, scope=scope,
        version=args.version,
    )
    atomic_write(args.out, [dl.to_signed(key)])
    print(f"{args.out}: snapshot of {_describe(dl)}")
    return 0


def run_delta(args: argparse.Namespace) -> int:
    if args.ids and (args.add or args.remove):
        raise CliError("give either --ids or --add/--remove, not both")
    if not (args.ids or args.add or args.remove):
        raise CliError("give --add and/or --remove, or --ids")
    key = load_private_key(args.key)
    if args.trust:
        trust = TrustStore.load(args.trust)
    else:  # the signing key vouches for its own base, whatever scope that names
        scope = inspect(Path(args.base))["scope"]
        trust = TrustStore([TrustedKey(key.public_key(), purpose=KeyPurpose.DENYLIST, scope=scope)])
    base = read_signed(Path(args.base), trust)
    if not isinstance(base, DenyList):
        raise CliError(f"{args.base}: is a delta; --base needs a snapshot")
    if args.ids:
        target = DenyList.from_ids(
            _progress(read_ids(args.ids), "reading ids"), kind=base.kind, scope=base.scope,
            version=base.version + 1,
        )
        delta = Delta.between(base, target)
    else:
        delta = Delta.from_ids(
            kind=base.kind, scope=base.scope, base=base.version,
            adds=_progress(read_ids(args.add), "adds") if args.add else (),
            removes=_progress(read_ids(args.remove), "removes") if args.remove else (),
        )
    new = base.apply(delta)
    atomic_write(args.out, [delta.to_signed(key)])
    print(f"{args.out}: delta {delta.base}→{delta.version}, +{len(delta.adds)} −{len(delta.removes)}")
    if args.snapshot_out:
        atomic_write(args.snapshot_out, [new.to_signed(key)])
        print(f"{args.snapshot_out}: snapshot of {_describe(new)}")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    key = load_private_key(args.key)
    text = sys.stdin.read() if args.pending == "-" else Path(args.pending).read_text()
    pending = PendingList.from_json(text)
    snapshot, delta = pending.sign(key)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{pending.kind}-{pending.version:010d}"
    for path, data in ((out / f"{name}.snapshot.pgdl", snapshot), (out / f"{name}.delta.pgdl", delta)):
        atomic_write(path, [data])
        print(path)
    print(f"signed {pending.kind} list {pending.scope!r} version {pending.version}: "
          f"{len(set(pending.ids))} entries, +{len(set(pending.adds))} −{len(set(pending.removes))}",
          file=sys.stderr)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    trust = TrustStore.load(args.trust) if args.trust else None
    summary = inspect(Path(args.file), trust)
    summary["issued_at_utc"] = iso_utc(summary["issued_at"])
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 1 if summary["ok"] is False else 0
