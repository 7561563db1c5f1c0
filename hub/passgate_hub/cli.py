"""``passgate-hub``: serve the hub; the operator's commands, on its database or through its API.

    passgate-hub serve --port 8600 --database postgresql+psycopg://hub@db/hub
    passgate-hub venue create arena
    passgate-hub gate create arena north-1 --zone floor      # prints the token once
    passgate-hub issue arena --count 100 --valid-until +8h --zone floor --out passes
    passgate-hub venue set arena --retention-days 14 --window-hours 24
    passgate-hub purge --dry-run                             # what the retention purge removes now

The commands share ``passgate_hub.ops`` with the admin API, so both behave the same. The database
is ``--database``, else ``$PASSGATE_HUB_DATABASE``, else ``passgate-hub.db`` here. With ``--url``
(or ``$PASSGATE_HUB_URL``) they run on that hub through its admin API instead (``remote``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from passgate import wire
from passgate.batch import write_batch
from passgate.times import FORMS, parse_time

from . import (
    apikeys,
    audit,
    claims,
    cliargs,
    dates,
    db,
    denylists,
    keys,
    offline,
    operators,
    ops,
    published,
    remote,
    retention,
    schemas,
    sealing,
)
from .models import Venue
from .scope import EVERYTHING, Role

Handler = Callable[[Session, argparse.Namespace], Any]
Arguments = list[tuple[tuple[str, ...], dict[str, Any]]]


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (the API's bounds), refused
    before it reaches the database."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value
    parse.__name__ = "number"  # argparse names the type in its message
    return parse


COUNT, ENTRIES = _whole(1, 1_000_000), _whole(1, wire.MAX_ENTRIES)
CURSOR, LIMIT = _whole(0, 2**62), _whole(1, 10_000)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    url = db.database_url(args.database)
    db.migrate(db.make_engine(url))  # seals plain keys left by an older hub (needs the sealing key)
    os.environ[db.ENV_URL] = url
    for option, name in ((args.lists_dir, published.ENV_DIR), (args.lists_url, published.ENV_URL),
                         (args.public_url, claims.ENV_PUBLIC_URL)):
        if option:  # for the worker processes, which build the app from the environment
            os.environ[name] = option
    uvicorn.run("passgate_hub.app:from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level)
    return 0


def _deny(kind: str, remove: bool) -> Handler:
    def run(session: Session, args: argparse.Namespace) -> Any:
        if (nothing := cliargs.empty_file(args, kind)) is not None:
            return nothing
        version, changed = ops.deny(session, ops.get_venue(session, args.venue), kind, cliargs.pass_ids(args),
                                    remove=remove, external=args.external, reason=args.reason)
        return {"kind": kind, "version": version, "changed": changed}
    return run


def _issue(session: Session, args: argparse.Namespace) -> Any:
    if args.holder_bound:
        return _issue_bound(session, args)
    kid, passes = ops.issue(session, ops.get_venue(session, args.venue), count=args.count,
                            valid_from=parse_time(args.valid_from, name="--valid-from"),
                            valid_until=parse_time(args.valid_until, name="--valid-until"),
                            zones=args.zone, entries=args.entries, product=args.product,
                            reentry=args.reentry, record=not args.no_record)
    path = write_batch(args.out, passes, qr=None if args.no_qr else "png")
    return {"kid": kid, "issued": len(passes), "csv": str(path)}


def _issue_bound(session: Session, args: argparse.Namespace) -> Any:
    """Holder-bound passes: claim links (``claims.csv``, a QR of each link) instead of pass texts."""
    if args.no_record:
        raise ops.Invalid("a holder-bound pass is signed when claimed, from its record: drop --no-record")
    base = claims.require_public_url(args.public_url)
    kid, codes = claims.issue_bound(session, ops.get_venue(session, args.venue), count=args.count,
                                    valid_from=parse_time(args.valid_from, name="--valid-from"),
                                    valid_until=parse_time(args.valid_until, name="--valid-until"),
                                    zones=args.zone, entries=args.entries, product=args.product,
                                    reentry=args.reentry, holder_step=args.holder_step)
    path = claims.write_claim_links(args.out, claims.links(base, codes), qr=None if args.no_qr else "png")
    return {"kid": kid, "issued": len(codes), "holder_bound": True, "csv": str(path)}


def _claim_reset(session: Session, args: argparse.Namespace) -> Any:
    base = claims.require_public_url(args.public_url)
    code = claims.reset(session, ops.get_venue(session, args.venue), args.pass_id)
    return {"pass_id": args.pass_id.strip().lower(), "claim_code": code,
            "claim_url": claims.claim_url(base, code), "note": claims.STOLEN}


_PUBLIC_URL = (("--public-url",), {
    "metavar": "URL", "help": f"the hub's address as holders reach it, for claim links (default "
                              f"${claims.ENV_PUBLIC_URL}; with --url: the hub's own)"})
STEP = _whole(*claims.STEPS)


# --zone is the gate's zone; every other setting of ``wire.GateSettings`` is a flag of its own.
_SETTING_HINTS = typing.get_type_hints(wire.GateSettings)


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
        arguments.append(((cliargs.setting_flag(name),), {"dest": name, **options}))
    return arguments


def _gate_create(session: Session, args: argparse.Namespace) -> Any:
    token = ops.create_gate(session, ops.get_venue(session, args.venue), args.gate_id, args.zone,
                            cliargs.settings_given(args))
    return {"gate_id": args.gate_id, "token": token}


def _add_key(session: Session, args: argparse.Namespace) -> Any:
    pem = Path(args.pem).read_text() if args.pem else None
    row = ops.add_key(session, ops.get_venue(session, args.venue), public_pem_text=pem,
                      generate=args.pem is None, alg=args.alg, issuer=args.issuer)
    return {"kid": row.kid, "purpose": row.purpose, "has_private": row.has_private}


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


def _apikey_create(session: Session, args: argparse.Namespace) -> Any:
    secret = apikeys.create(session, args.name, role=Role(args.role), venues=args.venue,
                            all_venues=args.all_venues, by=EVERYTHING)
    return {"name": args.name, "key": secret}


def _operator_create(session: Session, args: argparse.Namespace) -> Any:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    made = operators.create(session, args.name, role=Role(args.role), venues=args.venue,
                            all_venues=args.all_venues, password=password, by=EVERYTHING)
    out = {"name": made.name, "totp_uri": made.totp_uri}
    if made.password is not None:
        out["password"] = made.password
    return out


def _gate_state(disabled: bool) -> Handler:
    return lambda s, a: ops.disable_gate(s, ops.get_venue(s, a.venue), a.gate_id, disabled=disabled)


def _gate_enroll_code(session: Session, args: argparse.Namespace) -> Any:
    code, expires = ops.enrollment_code(session, ops.get_venue(session, args.venue), args.gate_id)
    return {"gate_id": args.gate_id, "code": code, "expires_at": expires,
            "on_the_gate": f"passgated enroll {code} --hub https://HUB"}


def _gate_delete(session: Session, args: argparse.Namespace) -> Any:
    ops.delete_gate(session, ops.get_venue(session, args.venue), args.gate_id)
    return {"gate_id": args.gate_id, "deleted": True}


def _audit(session: Session, args: argparse.Namespace) -> Any:
    venue = ops.get_venue(session, args.venue) if args.venue else None
    return audit.entries(session, None, venue=venue, after=args.after, limit=args.limit)


_GATE: Arguments = [(("venue",), {}), (("gate_id",), {})]


def _venue_create(session: Session, args: argparse.Namespace) -> Any:
    pem = Path(args.denylist_key).read_text() if args.denylist_key else None
    venue = ops.create_venue(session, args.name, offline=args.offline, denylist_public_pem=pem)
    return {"venue": venue.name, "offline": venue.offline}


def _upload_lists(session: Session, args: argparse.Namespace) -> Any:
    """Each file in turn (the snapshot before its delta), in one transaction: all or none."""
    venue = ops.get_venue(session, args.venue)
    return [offline.accept_signed(session, venue, Path(name).read_bytes()) for name in args.files]


def _seal_rotate(session: Session, args: argparse.Namespace) -> Any:
    """Re-seal every key with the new sealing key; the commit is ``main``'s (one transaction)."""
    new = sealing.read_kek_file(args.new_key_file)
    count = keys.reseal(session, new)
    args.after_commit = lambda: _replace_default_kek(session, args.new_key_file)
    return {"resealed": count, "kek_id": new.kek_id.hex(), "new_key_file": args.new_key_file}


def _replace_default_kek(session: Session, new_key_file: str) -> None:
    """The default sealing key file beside an SQLite database follows a rotation by itself;
    a configured one is the operator's to point at the new file."""
    url = session.get_bind().engine.url
    source, path, _ = sealing.configured(url)
    if path is not None and path == sealing.default_path(url):
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        sealing.write_kek_file(partial, Path(new_key_file).read_text())
        os.replace(partial, path)
        print(f"passgate-hub seal rotate: {path} now holds the new sealing key", file=sys.stderr)
    else:
        print(f"passgate-hub seal rotate: point the hub at {new_key_file} instead of {source} "
              f"(${sealing.ENV_FILE} or the credential) and restart it", file=sys.stderr)


def _seal_new_key(_session: Session | None, args: argparse.Namespace) -> Any:
    """A new sealing key file (mode 0600, never overwriting); needs no database."""
    return {"file": args.file, "kek_id": sealing.write_kek_file(args.file).kek_id.hex()}


# Commands run before the database is opened: an upgrade that must seal plain keys needs a
# sealing key before the migration can run.
WITHOUT_DATABASE = ("seal new-key",)


def _purge(session: Session, args: argparse.Namespace) -> Any:
    venue = ops.get_venue(session, args.venue) if args.venue is not None else None
    return retention.purge_now(session, venue=venue, dry_run=args.dry_run)


# "group-action" becomes ``passgate-hub group action``; a name without "-" is a top-level command.
COMMANDS: dict[str, tuple[Handler, Arguments]] = {
    "apikey-create": (_apikey_create, [
        (("name",), {}),
        (("--role",), {"required": True, "choices": [r.value for r in Role],
                       "help": "viewer reads; operator also issues, revokes and blocks passes; admin "
                               "also manages zones, gates, issuer keys and API keys"}),
        (("--venue",), {"action": "append", "default": [], "help": "a venue the key is for (repeat)"}),
        (("--all-venues",), {"action": "store_true",
                             "help": "every venue, also those created later (a hub-wide key)"})]),
    "apikey-list": (lambda s, a: apikeys.list_keys(s, by=EVERYTHING), []),
    "apikey-rotate": (lambda s, a: {"name": a.name, "key": apikeys.rotate(s, a.name, by=EVERYTHING)},
                      [(("name",), {})]),
    "apikey-revoke": (lambda s, a: apikeys.revoke(s, a.name, by=EVERYTHING), [(("name",), {})]),
    "operator-create": (_operator_create, [
        (("name",), {}),
        (("--role",), {"required": True, "choices": [r.value for r in Role],
                       "help": "what the operator may do in the console (as for API keys)"}),
        (("--venue",), {"action": "append", "default": [], "help": "a venue of the operator (repeat)"}),
        (("--all-venues",), {"action": "store_true", "help": "every venue, also those created later"}),
        (("--password-stdin",), {"action": "store_true",
                                 "help": "read the password from the first line of stdin (else one is "
                                         "chosen and printed once)"})]),
    "operator-list": (lambda s, a: operators.list_operators(s, by=EVERYTHING), []),
    "operator-unlock": (lambda s, a: operators.unlock(s, a.name, by=EVERYTHING), [(("name",), {})]),
    "operator-disable": (lambda s, a: operators.set_disabled(s, a.name, True, by=EVERYTHING),
                         [(("name",), {})]),
    "operator-enable": (lambda s, a: operators.set_disabled(s, a.name, False, by=EVERYTHING),
                        [(("name",), {})]),
    "operator-delete": (lambda s, a: operators.delete(s, a.name, by=EVERYTHING), [(("name",), {})]),
    "venue-create": (_venue_create, [(("name",), {}),
                                     (("--offline",), {"action": "store_true",
                                                       "help": "offline issuer: the hub holds only "
                                                               "public keys of this venue"}),
                                     (("--denylist-key",), {"metavar": "PUB.pem",
                                                            "help": "an offline venue's deny-list "
                                                                    "public key"})]),
    "venue-list": (lambda s, a: ops.list_venues(s), []),
    "venue-set": (lambda s, a: ops.set_venue(s, ops.get_venue(s, a.name), retention_days=a.retention_days,
                                             window_hours=a.window_hours, timezone=a.timezone),
                  [(("name",), {}),
                   (("--retention-days",), {"type": int, "metavar": "N", "help": (
                       f"keep events and alerts N days ({retention.RETENTION_DAYS[0]}.."
                       f"{retention.RETENTION_DAYS[1]}; default {retention.DEFAULT_RETENTION_DAYS})")}),
                   (("--window-hours",), {"type": int, "metavar": "N", "help": (
                       f"keep pass ids N hours, unless a still-valid pass needs them "
                       f"({retention.WINDOW_HOURS[0]}..{retention.WINDOW_HOURS[1]}; "
                       f"default {retention.DEFAULT_WINDOW_HOURS})")}),
                   (("--timezone",), {"metavar": "ZONE", "help": "the venue's IANA time zone (e.g. "
                                                                "Europe/Berlin; default UTC): the console's "
                                                                "times and days"})]),
    "purge": (_purge, [(("--venue",), {"help": "only this venue"}),
                       (("--dry-run",), {"action": "store_true",
                                         "help": "count what would go, remove nothing"})]),
    "zone-create": (lambda s, a: {"zone": ops.create_zone(s, ops.get_venue(s, a.venue), a.name).name},
                    [(("venue",), {}), (("name",), {})]),
    "gate-create": (_gate_create, [(("venue",), {}), (("gate_id",), {}), (("--zone",), {}),
                                   *_setting_arguments()]),
    "gate-set": (lambda s, a: ops.set_gate(s, ops.get_venue(s, a.venue), a.gate_id, zone=a.zone,
                                           settings=cliargs.settings_given(a)),
                 [(("venue",), {}), (("gate_id",), {}), (("--zone",), {}), *_setting_arguments(),
                  (("--unset",), {"action": "append", "default": [], "metavar": "SETTING",
                                  "choices": [n.replace("_", "-") for n in ops.GATE_SETTINGS],
                                  "help": "leave a setting to the gate's own file again"})]),
    "gate-list": (lambda s, a: ops.list_gates(s, ops.get_venue(s, a.venue) if a.venue else None),
                  [(("--venue",), {})]),
    "gate-disable": (_gate_state(disabled=True), _GATE),
    "gate-enable": (_gate_state(disabled=False), _GATE),
    "gate-delete": (_gate_delete, _GATE),
    "gate-enroll-code": (_gate_enroll_code, _GATE),
    "gate-rotate-token": (lambda s, a: {"gate_id": a.gate_id, "token": ops.rotate_gate_token(
        s, ops.get_venue(s, a.venue), a.gate_id)}, _GATE),
    "gate-revoke-token": (lambda s, a: ops.revoke_gate_token(s, ops.get_venue(s, a.venue), a.gate_id), _GATE),
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
    "issue": (_issue, [(("venue",), {}), (("--count",), {"type": COUNT, "required": True}),
                       (("--valid-from",), {"default": "now", "metavar": "TIME",
                                            "help": f"{FORMS} (default: now)"}),
                       (("--valid-until",), {"required": True, "metavar": "TIME", "help": FORMS}),
                       (("--zone",), {"action": "append", "default": []}),
                       (("--entries",), {"type": ENTRIES, "help": "entries each pass allows "
                                                                  "(default: unlimited)"}),
                       (("--product",), {}),
                       (("--reentry",), {"action": "store_true"}),
                       (("--no-record",), {"action": "store_true"}),
                       (("--no-qr",), {"action": "store_true", "help": "CSV only, no PNG files"}),
                       (("--out",), {"required": True, "help": "directory for passes.csv and PNGs"}),
                       (("--holder-bound",), {"action": "store_true",
                                              "help": "passes a holder claims with the wallet (/wallet), "
                                                      "bound to the phone: claims.csv with a one-time "
                                                      "claim link (and its QR) a pass"}),
                       (("--holder-step",), {"type": STEP, "default": claims.DEFAULT_STEP, "metavar": "S",
                                             "help": "seconds a holder-bound pass's live code lasts "
                                                     f"({claims.STEPS[0]}..{claims.STEPS[1]}; default "
                                                     f"{claims.DEFAULT_STEP})"}),
                       _PUBLIC_URL]),
    "events": (_events, [(("venue",), {}), (("--gate",), {}), (("--kind",), {}),
                         (("--after",), {"type": CURSOR, "default": 0, "help": "the last seq seen"}),
                         (("--since",), {"metavar": "TIME", "help": FORMS}),
                         (("--until",), {"metavar": "TIME", "help": FORMS}),
                         (("--limit",), {"type": LIMIT, "default": 1000})]),
    "counts": (lambda s, a: ops.zone_counts(s, ops.get_venue(s, a.venue)), [(("venue",), {})]),
    "alerts": (lambda s, a: ops.list_alerts(s, ops.get_venue(s, a.venue), after=a.after, limit=a.limit),
               [(("venue",), {}), (("--after",), {"type": CURSOR, "default": 0, "help": "the last id seen"}),
                (("--limit",), {"type": LIMIT, "default": 1000})]),
    "audit": (_audit, [(("--venue",), {}),
                       (("--after",), {"type": CURSOR, "default": 0, "help": "the last id seen"}),
                       (("--limit",), {"type": LIMIT, "default": 1000})]),
}
COMMANDS["pass-issue"] = COMMANDS["issue"]  # beside pass record and pass claim-reset
COMMANDS.update({
    "pass-claim-reset": (_claim_reset, [(("venue",), {}), (("pass_id",), {"help": "a holder-bound pass"}),
                                        _PUBLIC_URL]),
    "pass-record": (lambda s, a: offline.record_passes(s, ops.get_venue(s, a.venue),
                                                       cliargs.pass_texts(a.files)),
                    [(("venue",), {}),
                     (("files",), {"nargs": "+", "metavar": "FILE",
                                   "help": "passes signed elsewhere: one a line, or passes.csv; "
                                           "- for stdin"})]),
    "denylist-pending": (lambda s, a: json.loads(offline.pending(s, ops.get_venue(s, a.venue), a.kind)
                                                 .to_json()),
                         [(("venue",), {}), (("kind",), {"choices": denylists.KINDS})]),
    "denylist-upload": (_upload_lists, [(("venue",), {}),
                                        (("files",), {"nargs": "+", "metavar": "FILE",
                                                      "help": "signed files from passgate denylist "
                                                              "sign: the snapshot, then the delta"})]),
    "seal-new-key": (_seal_new_key, [(("file",), {"help": "where to write it (refused if it exists)"})]),
    "seal-status": (lambda s, a: keys.seal_status(s), []),
    "seal-rotate": (_seal_rotate, [(("--new-key-file",), {"required": True, "metavar": "FILE",
                                                          "help": "from seal new-key"})]),
})
_DENY_ARGS: Arguments = [(("venue",), {}), (("pass_ids",), {"nargs": "*", "help": "pass ids (hex)"}),
                         (("--file",), {"help": "a file of pass ids, one a line"}), (("--reason",), {}),
                         (("--external",), {"action": "store_true",
                                            "help": "passes issued elsewhere (the hub has no record)"})]
COMMANDS["revoke"] = (_deny("revoked", remove=False), _DENY_ARGS)
COMMANDS["block"] = (_deny("blocked", remove=False), _DENY_ARGS)
COMMANDS["unblock"] = (_deny("blocked", remove=True), _DENY_ARGS)

# What each command and group does, for --help (tests/hub/test_cli_validation.py: every one has a line).
HELP = {
    "serve": "run the hub's HTTP API (migrates the database first)",
    "migrate": "bring the database schema up to date (seals plain keys)",
    "apikey": "admin API keys", "apikey-create": "create an admin API key (printed once)",
    "venue": "venues", "venue-create": "create a venue (and the key that signs its deny lists)",
    "venue-list": "venues with their zones and deny-list key id",
    "zone": "zones of a venue", "zone-create": "add a zone (passes and gates name it)",
    "gate": "gates of a venue", "gate-create": "add a gate; prints its token, once",
    "gate-set": "change a gate's zone or settings", "gate-list": "gates: settings, last seen, list "
                                                                  "versions, backlog, clock skew",
    "key": "issuer keys of a venue",
    "key-add": "trust a public key PEM (passes signed elsewhere), or generate a hub-held issuing key",
    "key-list": "a venue's keys: role, retired_at, revoked_at",
    "key-retire": "refuse passes a key issues from a time on",
    "key-revoke": "refuse every pass under a key (it leaked)",
    "key-rotate": "a new hub-held pass key; the one in use is retired (its passes stay valid)",
    "key-export": "print a key's public PEM",
    "issue": "sign passes with the venue's hub-held key: passes.csv (and QR PNGs) in --out",
    "events": "a venue's events in hub order (page with --after)",
    "counts": "entries, exits and inside per zone",
    "alerts": "double redemptions found at ingest (page with --after)",
    "revoke": "revoke passes: every gate refuses them from its next sync",
    "block": "block passes: refused until unblocked",
    "unblock": "lift blocks",
    "apikey-list": "API keys: name, grants, created, last used, revoked (never the secret)",
    "apikey-rotate": "a new secret for an API key (printed once); the old one stops at once",
    "apikey-revoke": "revoke an API key: it stops at once",
    "operator": "people who sign in to the console (/console)",
    "operator-create": "create an operator; prints its authenticator URI (and a chosen password) once",
    "operator-list": "operators: grants, last sign-in, lock-out, disabled",
    "operator-unlock": "end an operator's lock-out after failed sign-ins",
    "operator-disable": "disable an operator: its sessions end at once",
    "operator-enable": "enable a disabled operator again",
    "operator-delete": "delete an operator: its name, password hash, second factor and sessions go",
    "gate-disable": "refuse a gate's token until enabled again (nothing is deleted)",
    "gate-enable": "accept a disabled gate's token again",
    "gate-delete": "delete a gate (its events and counts stay; its id cannot be reused)",
    "gate-enroll-code": "a one-time code (a day) the gate exchanges for its token: passgated enroll CODE",
    "gate-rotate-token": "a new token for a gate (printed once); the old one stops at once",
    "gate-revoke-token": "revoke a gate's token: it stops at once",
    "audit": "changes made by operators: who, what, when, from where",
    "pass": "passes: issue, claim-reset (holder-bound), record (signed outside the hub)",
    "pass-issue": "the same as issue (--holder-bound: claim links for the wallet instead of pass texts)",
    "pass-claim-reset": "a new one-time claim link for a holder-bound pass (the old link stops working; "
                        "a phone that claimed it keeps it: revoke the pass if that phone was stolen)",
    "pass-record": "record passes signed with passgate issue, after checking each signature",
    "denylist": "an offline-issuer venue's deny lists",
    "denylist-pending": "the unsigned next version of a list, to sign with passgate denylist sign",
    "denylist-upload": "hand back the signed snapshot (and delta): served once they verify",
    "seal": "the key that seals the hub's private keys",
    "seal-new-key": "write a new sealing key file (mode 0600; needs no database)",
    "seal-status": "where the sealing key comes from and which keys it sealed",
    "seal-rotate": "re-seal every private key with a new sealing key, in one transaction",
    "venue-set": "a venue's retention (--retention-days, --window-hours) and time zone (--timezone)",
    "purge": "remove what retention says is due now (the running hub does this every 5 minutes)",
}


def build_parser() -> argparse.ArgumentParser:
    summary = __doc__.split("\n")[0].replace("``", "")
    parser = argparse.ArgumentParser(prog="passgate-hub", description=summary)
    parser.add_argument("--database", help=f"SQLAlchemy URL (default ${db.ENV_URL} or {db.DEFAULT_URL})")
    parser.add_argument("--url", help="run the command on the hub at this URL through its admin API "
                                      "(default $PASSGATE_HUB_URL unless --database is given)")
    parser.add_argument("--epoch", action="store_true",
                        help="times as epoch seconds (default: ISO 8601 dates in the venue's time zone)")
    parser.add_argument("--api-key-file", metavar="FILE", help="the admin API key for --url (default "
                                                               "$PASSGATE_HUB_API_KEY, or the file "
                                                               "$PASSGATE_HUB_API_KEY_FILE names)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help=HELP["serve"], description=HELP["serve"])
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=_whole(1, 65535), default=8600, help="default: 8600")
    serve.add_argument("--workers", type=_whole(1, 256), default=1,
                       help="worker processes (stateless; one more than the cores, README)")
    serve.add_argument("--log-level", default="info",
                       choices=("critical", "error", "warning", "info", "debug", "trace"))
    serve.add_argument("--lists-dir", metavar="DIR",
                       help="publish signed deny-list files here (default: $PASSGATE_HUB_LISTS_DIR, or "
                            "DATABASE.lists beside an SQLite database); served at /lists/")
    serve.add_argument("--lists-url", metavar="URL",
                       help="where gates download them when another server or a CDN serves DIR "
                            "(default: $PASSGATE_HUB_LISTS_URL, or this hub's /lists/)")
    serve.add_argument("--public-url", metavar="URL",
                       help=f"the hub's address as holders reach it, for claim links (default "
                            f"${claims.ENV_PUBLIC_URL}, else the address a request came in on)")
    serve.set_defaults(run=None)
    sub.add_parser("migrate", help=HELP["migrate"], description=HELP["migrate"]).set_defaults(run=None)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (handler, arguments) in COMMANDS.items():
        group, _, action = name.partition("-")
        if action:
            if group not in groups:
                groups[group] = sub.add_parser(group, help=HELP.get(group), description=HELP.get(group)
                                               ).add_subparsers(dest="action", required=True)
            command = groups[group].add_parser(action, help=HELP.get(name), description=HELP.get(name))
        else:
            command = sub.add_parser(name, help=HELP.get(name), description=HELP.get(name))
        for flags, options in arguments:
            command.add_argument(*flags, **options)
        command.set_defaults(run=handler)
    return parser


def _time_zones(session: Session) -> dict[str, str]:
    """Each venue's time zone, for the dates printed; after the command's commit, so a failure
    here costs only the zones (UTC), never an answer shown once, such as a new token."""
    try:
        return {name: zone for name, zone in session.execute(select(Venue.name, Venue.timezone))}
    except SQLAlchemyError:
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "pass_ids") and not any(e.startswith("-") for e in extra):
        args.pass_ids += extra  # ids after an option (``revoke arena --external ID``): argparse leaves them
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    if args.url is not None and args.database is not None:
        parser.error("--url runs the command through a hub's API, --database on a database: give one")
    url = args.url or (None if args.database else os.environ.get("PASSGATE_HUB_URL") or None)
    try:
        if url is not None and (args.url is not None or command not in remote.LOCAL_ONLY):
            result, zones = remote.run(command, url, args)
        elif command in WITHOUT_DATABASE:
            result, zones = args.run(None, args), {}
        else:
            if args.command == "serve":
                return _serve(args)
            engine = db.make_engine(args.database)
            db.migrate(engine)
            if args.command == "migrate":
                return 0
            with db.session_factory(engine)() as session:
                audit.act_as(session, audit.cli_actor())
                result = args.run(session, args)
                session.commit()
                zones = _time_zones(session)
                getattr(args, "after_commit", lambda: None)()
    except SQLAlchemyError as exc:
        print(f"passgate-hub {command}: {db.describe_error(exc, args.database)}", file=sys.stderr)
        return 1
    except (ops.NotFound, ops.Conflict, denylists.DenyListChangeError, sealing.SealingError,
            ValueError, OSError, remote.RemoteError) as exc:
        print(f"passgate-hub {command}: {exc}", file=sys.stderr)
        return 1
    try:
        if isinstance(result, str):  # a PEM, as it is
            print(result, end="")
        else:
            if not args.epoch:
                venue = args.name if args.command == "venue" and hasattr(args, "name") else getattr(
                    args, "venue", None)
                tz = ZoneInfo(zones[venue]) if isinstance(venue, str) and venue in zones else dates.UTC
                result = dates.readable(result, zones, tz)
            print(json.dumps(result, indent=2, sort_keys=True))
        sys.stdout.flush()
    except BrokenPipeError:  # ``passgate-hub events | head``: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0
