"""``passgate-hub``: serve the hub, and the operator's commands straight on its database.

    passgate-hub serve --port 8600 --database postgresql+psycopg://hub@db/hub
    passgate-hub venue create arena
    passgate-hub gate create arena north-1 --zone floor      # prints the token once

The commands share ``passgate_hub.ops`` with the admin API, so both behave the same. The database
is ``--database``, else ``$PASSGATE_HUB_DATABASE``, else ``passgate-hub.db`` here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from . import db, denylists, ops

Handler = Callable[[Session, argparse.Namespace], Any]
Arguments = list[tuple[tuple[str, ...], dict[str, Any]]]


def _time(value: str) -> float:
    """Epoch seconds or an ISO 8601 date-time with a zone (``2026-07-01T18:00:00+02:00``)."""
    try:
        return float(value)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value}: give a time zone (e.g. +00:00 or Z)")
    return parsed.timestamp()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    url = db.database_url(args.database)
    db.migrate(db.make_engine(url))
    os.environ[db.ENV_URL] = url
    uvicorn.run("passgate_hub.app:from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level)
    return 0


def _ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.pass_ids)
    if args.file:
        ids += [line.strip() for line in Path(args.file).read_text().splitlines() if line.strip()]
    return [i.lower() for i in ids]


def _deny(kind: str, remove: bool) -> Handler:
    def run(session: Session, args: argparse.Namespace) -> Any:
        ids = _ids(args)
        bad = [i for i in ids if len(i) != 32 or not _is_hex(i)]
        if bad:
            raise ops.Conflict(f"not a pass id (32 hex characters): {bad[0]}")
        adds, removes = ([], ids) if remove else (ids, [])
        version, changed = denylists.change(session, ops.get_venue(session, args.venue), kind,
                                            adds=adds, removes=removes, reason=args.reason)
        return {"kind": kind, "version": version, "changed": changed}
    return run


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _issue(session: Session, args: argparse.Namespace) -> Any:
    from passgate.qr import save_qr

    kid, passes = ops.issue(session, ops.get_venue(session, args.venue), count=args.count,
                            valid_from=args.valid_from, valid_until=args.valid_until,
                            zones=args.zone, entries=args.entries, product=args.product,
                            reentry=args.reentry, record=not args.no_record)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "passes.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["pass_id", "qr_file", "text"])
        for pass_id, text in passes:
            if not args.no_qr:
                save_qr(text, out / f"{pass_id}.png")
            writer.writerow([pass_id, "" if args.no_qr else f"{pass_id}.png", text])
    return {"kid": kid, "issued": len(passes), "csv": str(out / "passes.csv")}


def _add_key(session: Session, args: argparse.Namespace) -> Any:
    pem = Path(args.pem).read_text() if args.pem else None
    row = ops.add_key(session, ops.get_venue(session, args.venue), public_pem_text=pem,
                      generate=args.pem is None, alg=args.alg, issuer=args.issuer)
    return {"kid": row.kid, "purpose": row.purpose, "has_private": row.private_pem is not None}


def _events(session: Session, args: argparse.Namespace) -> Any:
    rows = ops.query_events(session, ops.get_venue(session, args.venue), gate_id=args.gate,
                            kind=args.kind, after=args.after, since=args.since, until=args.until,
                            limit=args.limit)
    fields = ("seq", "event_id", "gate_id", "t", "kind", "direction", "pass_id", "decision",
              "reason", "latency_ms", "detail")
    return [{f: getattr(r, f) for f in fields} for r in rows]


# "group-action" becomes ``passgate-hub group action``; a name without "-" is a top-level command.
COMMANDS: dict[str, tuple[Handler, Arguments]] = {
    "apikey-create": (lambda s, a: {"name": a.name, "key": ops.create_api_key(s, a.name)},
                      [(("name",), {})]),
    "venue-create": (lambda s, a: {"venue": ops.create_venue(s, a.name).name}, [(("name",), {})]),
    "venue-list": (lambda s, a: ops.list_venues(s), []),
    "zone-create": (lambda s, a: {"zone": ops.create_zone(s, ops.get_venue(s, a.venue), a.name).name},
                    [(("venue",), {}), (("name",), {})]),
    "gate-create": (lambda s, a: {"gate_id": a.gate_id, "token": ops.create_gate(
        s, ops.get_venue(s, a.venue), a.gate_id, a.zone, json.loads(a.config))},
        [(("venue",), {}), (("gate_id",), {}), (("--zone",), {}),
         (("--config",), {"default": "{}", "help": "JSON object sent to the gate in its bundle"})]),
    "gate-list": (lambda s, a: ops.list_gates(s, ops.get_venue(s, a.venue) if a.venue else None),
                  [(("--venue",), {})]),
    "key-add": (_add_key, [(("venue",), {}),
                           (("pem",), {"nargs": "?", "help": "a public key PEM; omit to generate one "
                                                              "the hub issues with"}),
                           (("--alg",), {"default": "ed25519", "choices": ("ed25519", "es256")}),
                           (("--issuer",), {})]),
    "key-list": (lambda s, a: [{"kid": k.kid, "purpose": k.purpose, "issuer": k.issuer,
                                "has_private": k.private_pem is not None}
                               for k in ops.list_keys(s, ops.get_venue(s, a.venue))],
                 [(("venue",), {})]),
    "issue": (_issue, [(("venue",), {}), (("--count",), {"type": int, "required": True}),
                       (("--valid-from",), {"type": _time, "required": True}),
                       (("--valid-until",), {"type": _time, "required": True}),
                       (("--zone",), {"action": "append", "default": []}),
                       (("--entries",), {"type": int}), (("--product",), {}),
                       (("--reentry",), {"action": "store_true"}),
                       (("--no-record",), {"action": "store_true"}),
                       (("--no-qr",), {"action": "store_true", "help": "CSV only, no PNG files"}),
                       (("--out",), {"required": True, "help": "directory for passes.csv and PNGs"})]),
    "events": (_events, [(("venue",), {}), (("--gate",), {}), (("--kind",), {}),
                         (("--after",), {"type": int, "default": 0}),
                         (("--since",), {"type": _time}), (("--until",), {"type": _time}),
                         (("--limit",), {"type": int, "default": 1000})]),
    "counts": (lambda s, a: ops.zone_counts(s, ops.get_venue(s, a.venue)), [(("venue",), {})]),
}
_DENY_ARGS: Arguments = [(("venue",), {}), (("pass_ids",), {"nargs": "*", "help": "pass ids (hex)"}),
                         (("--file",), {"help": "a file of pass ids, one a line"}), (("--reason",), {})]
COMMANDS["revoke"] = (_deny("revoked", remove=False), _DENY_ARGS)
COMMANDS["block"] = (_deny("blocked", remove=False), _DENY_ARGS)
COMMANDS["unblock"] = (_deny("blocked", remove=True), _DENY_ARGS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="passgate-hub", description=__doc__.split("\n")[0])
    parser.add_argument("--database", help=f"SQLAlchemy URL (default ${db.ENV_URL} or {db.DEFAULT_URL})")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the hub's HTTP API (migrates the database first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8600)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (stateless)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=None)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(run=None)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (handler, arguments) in COMMANDS.items():
        group, _, action = name.partition("-")
        if action:
            if group not in groups:
                groups[group] = sub.add_parser(group, help=f"{group} commands").add_subparsers(
                    dest="action", required=True)
            command = groups[group].add_parser(action)
        else:
            command = sub.add_parser(name)
        for flags, options in arguments:
            command.add_argument(*flags, **options)
        command.set_defaults(run=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    engine = db.make_engine(args.database)
    db.migrate(engine)
    if args.command == "migrate":
        return 0
    try:
        with db.session_factory(engine)() as session:
            result = args.run(session, args)
            session.commit()
    except (ops.NotFound, ops.Conflict, denylists.DenyListChangeError, ValueError, OSError) as exc:
        print(f"passgate-hub {args.command}: {exc}", file=sys.stderr)
        return 1
    _print_json(result)
    return 0
