"""``passgate pretix pull``: a pretix event's keys, check-in lists and deny lists, for gates that hold
no pretix credentials (see ``passgate.pretix_sync``).

The token comes from a file (``--token-file``) or the environment (``PASSGATE_PRETIX_TOKEN``), never
the command line, where ``ps`` shows it to every user of the machine.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..denylist import DenyListError, describe_version
from ..keys import load_private_key
from .common import CliError

if TYPE_CHECKING:
    from ..pretix_sync import PullResult

TOKEN_ENV = "PASSGATE_PRETIX_TOKEN"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretix", help="keep gates current with a pretix event (keys, check-in lists, "
                                      "deny lists)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = actions.add_parser(
        "pull",
        help="fetch a pretix event and write event.json, checkinlists.json and signed deny lists",
        description="Fetch a pretix event's signing keys, check-in lists, revoked and blocked secrets "
        "over pretix's REST API and write, in --out: event.json, checkinlists.json, lists/ (signed "
        "revoked and blocked lists of pass ids, a new version only when entries change, and a "
        "freshness statement each pull) and the state of the next incremental pull. Run it from cron "
        f"or a timer. The token: --token-file, or the environment variable {TOKEN_ENV}.",
    )
    pull.add_argument("--url", required=True, help="the shop's address, e.g. https://pretix.eu")
    pull.add_argument("--organizer", required=True, help="the organizer's slug")
    pull.add_argument("--event", required=True, help="the event's slug")
    pull.add_argument("--out", required=True, metavar="DIR", help="directory for the files (created)")
    pull.add_argument("--signing-key", required=True, metavar="PRIV.pem",
                      help="the deny-list private key (passgate keygen --purpose denylist)")
    pull.add_argument("--scope", help="the lists' scope, as the gates trust the key for "
                                      "(default: the key id in hex)")
    pull.add_argument("--token-file", metavar="FILE",
                      help=f"file holding the pretix token (default: the environment variable {TOKEN_ENV})")
    pull.add_argument("--device", action="store_true",
                      help="the token is a device token (Authorization: Device), not an API token")
    pull.add_argument("--full", action="store_true",
                      help="fetch every revoked and blocked secret again and rebuild the state (after "
                           "damage, or to start over); the lists go on from their newest versions")
    pull.add_argument("--timeout", type=float, default=60.0, metavar="S",
                      help="seconds to wait for each answer (default 60)")
    pull.set_defaults(run=run_pull)


def read_token(token_file: str | None) -> str:
    """The token from ``token_file`` or the environment; a file others may read earns a warning."""
    if token_file:
        path = Path(token_file)
        token = path.read_text(encoding="utf-8", errors="replace").strip()
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if stat.S_ISREG(mode) and mode & 0o077:
            print(f"passgate pretix: warning: {path} can be read by other users (chmod 600 it)",
                  file=sys.stderr)
        where = str(path)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        where = TOKEN_ENV
    if not token:
        raise CliError(f"no pretix token: give --token-file FILE or set {TOKEN_ENV} "
                       f"({where} is empty or unset); never the token itself on the command line")
    return token


def run_pull(args: argparse.Namespace) -> int:
    try:
        from .. import pretix_sync as sync
    except ImportError as exc:  # requests comes with the pretix extra
        raise CliError(f"passgate pretix needs the pretix extra (pip install 'passgate[pretix]'): {exc}"
                       ) from None
    if not 0 < args.timeout <= 3600:
        raise CliError("--timeout: seconds from 0 to 3600")
    key = load_private_key(args.signing_key)
    token = read_token(args.token_file)
    try:
        source = sync.PretixSource(args.url, args.organizer, args.event)
        with sync.PretixClient(source, token, device=args.device,
                               timeout=(min(10.0, args.timeout), args.timeout)) as client:
            result = sync.pull(client, args.out, key, scope=args.scope, full=args.full)
    except sync.PretixSyncError as exc:
        raise CliError(f"{exc} [{exc.code}]") from None
    except DenyListError as exc:  # a signed list in --out that cannot be used
        raise CliError(f"{exc} [sync_state]") from None
    report(result, Path(args.out))
    return 0


def report(result: PullResult, out: Path) -> None:
    """The summary: the event and its keys, the check-in lists, each list's version and changes,
    the secrets no gate can check."""
    zone = f", time zone {result.timezone}" if result.timezone else ""
    plural = "s" if result.keys != 1 else ""
    print(f"event {result.event} ({result.name}): {result.keys} pretix_sig1 key{plural}{zone}; "
          f"{result.checkin_lists} check-in list{'s' if result.checkin_lists != 1 else ''}")
    if not result.keys:
        print("passgate pretix: warning: the event lists no pretix_sig1 key: its tickets use pretix's "
              "random secrets, which no gate can check offline", file=sys.stderr)
    for kind, lst in result.lists.items():
        if not lst.changed:
            change = "unchanged (freshness statement signed)"
        else:
            before = f" from {describe_version(lst.previous)}" if lst.previous else ""
            change = f"new version{before}: +{lst.added} −{lst.removed}"
        print(f"{kind} list {lst.scope!r} version {describe_version(lst.version)}: {lst.entries} "
              f"entr{'ies' if lst.entries != 1 else 'y'}, {change}")
        if lst.unchecked:
            print(f"  {lst.unchecked} {kind} secret{'s are' if lst.unchecked != 1 else ' is'} not "
                  f"pretix_sig1 ({lst.unchecked_new} new): skipped, no gate can check them offline")
    for kind in result.new_epoch:
        print(f"{kind} list: a new epoch began (no earlier signed list in {out / 'lists'}): gates "
              "take it as newer than any version they hold")
    for path in result.written:
        print(f"wrote {path}")
