"""``passgate issue``, ``verify`` and ``qr``: the pass life cycle from the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

from tqdm import tqdm

from ..batch import write_batch
from ..cose import ALGORITHM_NAMES, PrivateKey
from ..keys import TrustStore, load_private_key
from ..passes import Pass, PassRefused, iso_utc, issue_pass, verify_pass
from ..pretix import PretixKey, PretixTicket, is_sig1, load_event_keys, verify_sig1
from ..qr import save_qr
from ..times import FORMS, parse_time
from .common import CliError, read_lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("issue", help="issue signed passes")
    p.add_argument("--key", required=True, metavar="PRIV.pem", help="issuer private key")
    p.add_argument("--valid-until", required=True, metavar="TIME", help=FORMS)
    p.add_argument("--valid-from", default="now", metavar="TIME", help="default: now")
    p.add_argument("--zones", default="", help="comma-separated zones (default: any zone)")
    p.add_argument("--entries", type=int, metavar="N", help="entries allowed (default: unlimited)")
    p.add_argument("--product", help="product or ticket kind, e.g. DAY")
    p.add_argument("--reentry", action="store_true", help="allow re-entry after an exit")
    p.add_argument("--issuer", help="issuer name claim (optional: the key id identifies it)")
    p.add_argument("--qr", metavar="FILE", help="also write the QR code (.png or .svg)")
    p.add_argument("--count", type=int, default=1, metavar="N", help="number of passes")
    p.add_argument("--out", metavar="DIR", help="write passes.csv and one QR image per pass")
    p.add_argument("--format", choices=("png", "svg"), default="png", help="QR format for --out")
    p.set_defaults(run=run_issue)

    p = sub.add_parser("verify", help="verify passes; exit 0 only when all are valid",
                       description="Verify PG1 passes and PG2 presentations (with --trust) and pretix's "
                                   "signed tickets (with --pretix-event); give one or both.")
    p.add_argument("--trust", metavar="DIR", help="trusted public keys, for PG1 passes")
    add_pretix_event_option(p)
    p.add_argument("text", metavar="TEXT", help="pass text, or - to read one per line from stdin")
    p.add_argument("--now", metavar="TIME", help="check validity at this time (default: now)")
    p.add_argument("--skew", type=float, default=60.0, help="clock tolerance, s (default 60)")
    p.set_defaults(run=run_verify)

    p = sub.add_parser("qr", help="render a pass as a QR code")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--out", required=True, metavar="FILE", help=".png or .svg")
    p.add_argument("--scale", type=int, default=8, help="pixels per module (default 8)")
    p.set_defaults(run=run_qr)


def run_issue(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CliError("--count must be at least 1")
    if args.count > 1 and args.qr:
        raise CliError("--qr writes one file; use --out DIR with --count")
    if args.entries is not None and args.entries < 1:
        raise CliError("--entries must be at least 1")
    key = load_private_key(args.key)
    options = dict(
        valid_from=parse_time(args.valid_from, name="--valid-from"),
        valid_until=parse_time(args.valid_until, name="--valid-until"),
        zones=[z.strip() for z in args.zones.split(",") if z.strip()],
        entries=args.entries,
        product=args.product,
        reentry=args.reentry,
        issuer=args.issuer,
    )
    if options["valid_until"] <= options["valid_from"]:
        raise CliError("--valid-until must be after --valid-from")

    def issued() -> Iterator[str]:
        for _ in tqdm(range(args.count), desc="issuing", unit="pass", disable=None, leave=False):
            text = issue_pass(key, **options)
            print(text, flush=args.count == 1)
            if args.qr:
                save_qr(text, args.qr)
            yield text

    if args.out:
        write_batch(args.out, ((text_pass_id(text, key), text) for text in issued()), qr=args.format)
    else:
        for _ in issued():
            pass
    return 0


def text_pass_id(text: str, key: PrivateKey) -> str:
    """The pass id of a pass we just issued (verified against its own key)."""
    trust = TrustStore()
    trust.add(key.public_key())
    return verify_pass(text, trust, now=0, skew=float("inf")).pass_id_hex


def pass_json(p: Pass) -> dict[str, object]:
    return {
        "valid": True,
        "reason": "admit",
        "pass_id": p.pass_id_hex,
        "kid": p.kid.hex(),
        "alg": ALGORITHM_NAMES[p.alg],
        "issuer": p.issuer,
        "valid_from": iso_utc(p.valid_from),
        "valid_until": iso_utc(p.valid_until),
        "zones": list(p.zones),
        "entries": p.entries,
        "product": p.product,
        "reentry": p.reentry,
        # A bound pass verifies as plain PG1 too, but gates want its holder's live code (PG2).
        "holder_bound": p.holder_key is not None,
        "holder_verified": p.holder_verified,
    }


def add_pretix_event_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pretix-event", metavar="FILE",
                   help="pretix event resource (JSON of GET /api/v1/organizers/ORG/events/EVENT/): "
                        "its valid_keys verify pretix's signed tickets (pretix_sig1)")


def ticket_json(t: PretixTicket) -> dict[str, object]:
    return {
        "valid": True,
        "reason": "admit",
        "format": "pretix_sig1",
        "pass_id": t.pass_id_hex,
        "key": t.key,
        "seed": t.seed,
        "item": t.item,
        "variation": t.variation,
        "subevent": t.subevent,
        "valid_from": None if t.valid_from is None else iso_utc(t.valid_from),
        "valid_until": None if t.valid_until is None else iso_utc(t.valid_until),
    }


def verify_json(text: str | bytes, trust: TrustStore | None, pretix: tuple[PretixKey, ...] | None,
                *, now: float | None = None, skew: float = 60.0) -> dict[str, object]:
    """One text's verdict as a JSON object: a pretix_sig1 secret goes to the event's keys when they
    are given, anything else to the trust store (to the event's keys when there is no trust store)."""
    if trust is None and pretix is None:
        raise CliError("give --trust DIR (PG1 passes), --pretix-event FILE (pretix tickets) or both")
    try:
        if trust is not None and (pretix is None or not is_sig1(text)):
            return pass_json(verify_pass(text, trust, now=now, skew=skew))
        assert pretix is not None  # for mypy: checked above
        return ticket_json(verify_sig1(text, pretix, now=now, skew=skew))
    except PassRefused as refused:
        return {"valid": False, "reason": str(refused.reason), "detail": refused.detail}


def run_verify(args: argparse.Namespace) -> int:
    if not args.trust and not args.pretix_event:
        raise CliError("give --trust DIR (PG1 passes), --pretix-event FILE (pretix tickets) or both")
    trust = TrustStore.load(args.trust) if args.trust else None
    pretix = load_event_keys(args.pretix_event) if args.pretix_event else None
    now = parse_time(args.now, name="--now") if args.now else None
    all_valid, seen = True, 0
    for text in read_lines(args.text):
        seen += 1
        result = verify_json(text, trust, pretix, now=now, skew=args.skew)
        all_valid = all_valid and result["valid"] is True
        print(json.dumps(result), flush=True)
    if not seen:
        raise CliError("no pass to verify on stdin")
    return 0 if all_valid else 1


def run_qr(args: argparse.Namespace) -> int:
    path = save_qr(args.text.strip(), args.out, scale=args.scale)
    print(path)
    return 0
