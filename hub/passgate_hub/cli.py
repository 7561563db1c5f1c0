"""``passgate-hub``: serve the hub, and the operator's commands straight on its database.

    passgate-hub serve --port 8600 --database postgresql+psycopg://hub@db/hub
    passgate-hub venue create arena
    passgate-hub gate create arena north-1 --zone floor      # prints the token once
    passgate-hub issue arena --count 100 --valid-until +8h --zone floor --out passes
    passgate-hub venue set arena --retention-days 14 --window-hours 24
    passgate-hub purge --dry-run                             # what the retention purge removes now

The commands share ``passgate_hub.ops`` with the admin API, so both behave the same. The database
is ``--database``, else ``$PASSGATE_HUB_DATABASE``, else ``passgate-hub.db`` here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from passgate import wire
from passgate.batch import write_batch
from passgate.times import FORMS, parse_time

from . import db, denylists, ops, retention, schemas

Handler = Callable[[Session, argparse.Namespace], Any]
Arguments = list[tuple[tuple[str, ...], dict[str, Any]]]


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
    return ids


def _deny(kind: str, remove: bool) -> Handler:
    def run(session: Session, args: argparse.Namespace) -> Any:
        version, changed = ops.deny(session, ops.get_venue(session, args.venue), kind, _ids(args),
                                    remove=remove, external=args.external, reason=args.reason)
        return {"kind": kind, "version": version, "changed": changed}
    return run


def _issue(session: Session, args: argparse.Namespace) -> Any:
    kid, passes = ops.issue(session, ops.get_venue(session, args.venue), count=args.count,
                            valid_from=parse_time(args.valid_from, name="--valid-from"),
                            valid_until=parse_time(args.valid_until, name="--valid-until"),
                            zones=args.zone, entries=args.entries, product=args.product,
                            reentry=args.reentry, record=not args.no_record)
    path = write_batch(args.out, passes, qr=None if args.no_qr else "png")
    return {"kid": kid, "issued": len(passes), "csv": str(path)}


# --zone is the gate's zone; every other setting of ``wire.GateSettings`` is a flag of its own.
_SETTING_HINTS = typing.get_type_hints(wire.GateSettings)


def _setting_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _setting_arguments() -> Arguments:
    """``gate create`` and ``gate set`` flags, one per setting, with the wire's bounds as help."""
    arguments: Arguments = []
    for name in ops.GATE_SETTINGS:
        (kind,) = [a for a in typing.get_args(_SETTING_HINTS[name]) if a is not type(None)]
        limits = wire.bounds(wire.GateSettings, name)
        if kind is bool:
            options: dict[str, Any] = {"action": argparse.BooleanOptionalAction}
        elif isinstance(kind, type) and issubclass(kind, Enum):
            options = {"choices": [m.value for m in kind]}
        else:
            options = {"type": kind, "metavar": "N",
                       "help": f"{limits.get('ge', '')}..{limits.get('le', '')}"}
        arguments.append(((_setting_flag(name),), {"dest": name, **options}))
    return arguments


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line; ``--unset`` ones as ``None``."""
    unset = [name.replace("-", "_") for name in getattr(args, "unset", [])]
    given = {name: getattr(args, name) for name in ops.GATE_SETTINGS if getattr(args, name) is not None}
    both = [name for name in unset if name in given]
    if both:
        raise ops.Invalid(f"{_setting_flag(both[0])} is both given and unset")
    return {**given, **dict.fromkeys(unset)}


def _gate_create(session: Session, args: argparse.Namespace) -> Any:
    token = ops.create_gate(session, ops.get_venue(session, args.venue), args.gate_id, args.zone,
                            _settings(args))
    return {"gate_id": args.gate_id, "token": token}


def _add_key(session: Session, args: argparse.Namespace) -> Any:
    pem = Path(args.pem).read_text() if args.pem else None
    row = ops.add_key(session, ops.get_venue(session, args.venue), public_pem_text=pem,
                      generate=args.pem is None, alg=args.alg, issuer=args.issuer)
    return {"kid": row.kid, "purpose": row.purpose, "has_private": row.private_pem is not None}


def _key_json(row: Any) -> dict[str, Any]:
    return schemas.KeyOut.of(row).model_dump()


def _retire_key(session: Session, args: argparse.Namespace) -> Any:
    at = parse_time(args.at, name="--at")
    return _key_json(ops.retire_key(session, ops.get_venue(session, args.venue), args.kid, at=at))


def _rotate_key(session: Session, args: argparse.Namespace) -> Any:
    row, retired = ops.rotate_key(session, ops.get_venue(session, args.venue), alg=args.alg)
    return {"new": _key_json(row), "retired": retired}


def _events(session: Session, args: argparse.Namespace) -> Any:
    rows = ops.query_events(session, ops.get_venue(session, args.venue), gate_id=args.gate,
                            kind=args.kind, after=args.after,
                            since=None if args.since is None else parse_time(args.since, name="--since"),
                            until=None if args.until is None else parse_time(args.until, name="--until"),
                            limit=args.limit)
    return [schemas.EventOut.model_validate(r, from_attributes=True).model_dump() for r in rows]  # as the API


def _purge(session: Session, args: argparse.Namespace) -> Any:
    if args.venue is not None:
        ops.get_venue(session, args.venue)
    removed, _ = retention.purge(session, venue=args.venue, dry_run=args.dry_run)
    return {"dry_run": args.dry_run, "venues": {name: dataclasses.asdict(p) for name, p in removed.items()}}


# "group-action" becomes ``passgate-hub group action``; a name without "-" is a top-level command.
COMMANDS: dict[str, tuple[Handler, Arguments]] = {
    "apikey-create": (lambda s, a: {"name": a.name, "key": ops.create_api_key(s, a.name)},
                      [(("name",), {})]),
    "venue-create": (lambda s, a: {"venue": ops.create_venue(s, a.name).name}, [(("name",), {})]),
    "venue-list": (lambda s, a: ops.list_venues(s), []),
    "venue-set": (lambda s, a: ops.set_venue(s, ops.get_venue(s, a.name), retention_days=a.retention_days,
                                             window_hours=a.window_hours),
                  [(("name",), {}),
                   (("--retention-days",), {"type": int, "metavar": "N", "help": (
                       f"keep events and alerts N days ({retention.RETENTION_DAYS[0]}.."
                       f"{retention.RETENTION_DAYS[1]}; default {retention.DEFAULT_RETENTION_DAYS})")}),
                   (("--window-hours",), {"type": int, "metavar": "N", "help": (
                       f"keep pass ids N hours, unless a still-valid pass needs them "
                       f"({retention.WINDOW_HOURS[0]}..{retention.WINDOW_HOURS[1]}; "
                       f"default {retention.DEFAULT_WINDOW_HOURS})")})]),
    "purge": (_purge, [(("--venue",), {"help": "only this venue"}),
                       (("--dry-run",), {"action": "store_true",
                                         "help": "count what would go, remove nothing"})]),
    "zone-create": (lambda s, a: {"zone": ops.create_zone(s, ops.get_venue(s, a.venue), a.name).name},
                    [(("venue",), {}), (("name",), {})]),
    "gate-create": (_gate_create, [(("venue",), {}), (("gate_id",), {}), (("--zone",), {}),
                                   *_setting_arguments()]),
    "gate-set": (lambda s, a: ops.set_gate(s, ops.get_venue(s, a.venue), a.gate_id, zone=a.zone,
                                           settings=_settings(a)),
                 [(("venue",), {}), (("gate_id",), {}), (("--zone",), {}), *_setting_arguments(),
                  (("--unset",), {"action": "append", "default": [], "metavar": "SETTING",
                                  "choices": [n.replace("_", "-") for n in ops.GATE_SETTINGS],
                                  "help": "leave a setting to the gate's own file again"})]),
    "gate-list": (lambda s, a: ops.list_gates(s, ops.get_venue(s, a.venue) if a.venue else None),
                  [(("--venue",), {})]),
    "key-add": (_add_key, [(("venue",), {}),
                           (("pem",), {"nargs": "?", "help": "a public key PEM; omit to generate one "
                                                              "the hub issues with"}),
                           (("--alg",), {"default": "ed25519", "choices": ("ed25519", "es256")}),
                           (("--issuer",), {})]),
    "key-list": (lambda s, a: [_key_json(k) for k in ops.list_keys(s, ops.get_venue(s, a.venue))],
                 [(("venue",), {})]),
    "key-retire": (_retire_key, [(("venue",), {}), (("kid",), {}),
                                 (("--at",), {"default": "now", "metavar": "TIME",
                                              "help": f"passes issued from then on are refused; "
                                                      f"{FORMS} (default: now)"})]),
    "key-revoke": (lambda s, a: _key_json(ops.revoke_key(s, ops.get_venue(s, a.venue), a.kid)),
                   [(("venue",), {}), (("kid",), {})]),
    "key-rotate": (_rotate_key, [(("venue",), {}),
                                 (("--alg",), {"default": "ed25519", "choices": ("ed25519", "es256")})]),
    "key-export": (lambda s, a: ops.export_key(s, ops.get_venue(s, a.venue), a.kid),
                   [(("venue",), {}), (("kid",), {"help": "a key id (key list; venue list names the "
                                                          "deny-list key)"})]),
    "issue": (_issue, [(("venue",), {}), (("--count",), {"type": int, "required": True}),
                       (("--valid-from",), {"default": "now", "metavar": "TIME",
                                            "help": f"{FORMS} (default: now)"}),
                       (("--valid-until",), {"required": True, "metavar": "TIME", "help": FORMS}),
                       (("--zone",), {"action": "append", "default": []}),
                       (("--entries",), {"type": int}), (("--product",), {}),
                       (("--reentry",), {"action": "store_true"}),
                       (("--no-record",), {"action": "store_true"}),
                       (("--no-qr",), {"action": "store_true", "help": "CSV only, no PNG files"}),
                       (("--out",), {"required": True, "help": "directory for passes.csv and PNGs"})]),
    "events": (_events, [(("venue",), {}), (("--gate",), {}), (("--kind",), {}),
                         (("--after",), {"type": int, "default": 0}),
                         (("--since",), {"metavar": "TIME", "help": FORMS}),
                         (("--until",), {"metavar": "TIME", "help": FORMS}),
                         (("--limit",), {"type": int, "default": 1000})]),
    "counts": (lambda s, a: ops.zone_counts(s, ops.get_venue(s, a.venue)), [(("venue",), {})]),
    "alerts": (lambda s, a: ops.list_alerts(s, ops.get_venue(s, a.venue), after=a.after, limit=a.limit),
               [(("venue",), {}), (("--after",), {"type": int, "default": 0, "help": "the last id seen"}),
                (("--limit",), {"type": int, "default": 1000})]),
}
_DENY_ARGS: Arguments = [(("venue",), {}), (("pass_ids",), {"nargs": "*", "help": "pass ids (hex)"}),
                         (("--file",), {"help": "a file of pass ids, one a line"}), (("--reason",), {}),
                         (("--external",), {"action": "store_true",
                                            "help": "passes issued elsewhere (the hub has no record)"})]
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
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "pass_ids") and not any(e.startswith("-") for e in extra):
        args.pass_ids += extra  # ids after an option (``revoke arena --external ID``): argparse leaves them
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        print(f"passgate-hub {command}: {exc}", file=sys.stderr)
        return 1
    if isinstance(result, str):  # a PEM, as it is
        print(result, end="")
    else:
        _print_json(result)
    return 0
