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

    p = sub.add_parser("verify", help="verify passes; exit 0 only when all are valid")
    p.add_argument("--trust", required=True, metavar="DIR", help="trusted public keys")
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
    }


def run_verify(args: argparse.Namespace) -> int:
    trust = TrustStore.load(args.trust)
    now = parse_time(args.now, name="--now") if args.now else None
    all_valid, seen = True, 0
    for text in read_lines(args.text):
        seen += 1
        try:
            result = pass_json(verify_pass(text, trust, now=now, skew=args.skew))
        except PassRefused as refused:
            all_valid = False
            result = {"valid": False, "reason": str(refused.reason), "detail": refused.detail}
        print(json.dumps(result), flush=True)
    if not seen:
        raise CliError("no pass to verify on stdin")
    return 0 if all_valid else 1


def run_qr(args: argparse.Namespace) -> int:
    path = save_qr(args.text.strip(), args.out, scale=args.scale)
    print(path)
    return 0
