"""``passgate decode``: read the codes in image files (and verify the passes found)."""

from __future__ import annotations

import argparse
import json
import time

from ..decode import BACKENDS, DEFAULT_FORMATS, ZXING_FORMATS, Decoder, MissingExtra
from ..keys import TrustStore
from ..pretix import load_event_keys
from .common import CliError
from .passes import add_pretix_event_option, verify_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decode", help="decode QR codes in images; exit 0 only when every image had a code"
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, ... files")
    p.add_argument("--backend", choices=BACKENDS, default="zxing", help="default: zxing")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                   help=f"comma-separated, from {','.join(ZXING_FORMATS)} (default: qr)")
    p.add_argument("--fallback", action="store_true",
                   help="retry with zbar when zxing-cpp finds a code it cannot decode")
    p.add_argument("--verify", action="store_true", help="verify each code as a pass")
    p.add_argument("--trust", metavar="DIR", help="trusted public keys (for --verify of PG1 passes)")
    add_pretix_event_option(p)
    p.set_defaults(run=run_decode)


def run_decode(args: argparse.Namespace) -> int:
    if args.verify and not args.trust and not args.pretix_event:
        raise CliError("--verify needs --trust DIR (PG1 passes), --pretix-event FILE (pretix) or both")
    trust = TrustStore.load(args.trust) if args.verify and args.trust else None
    pretix = load_event_keys(args.pretix_event) if args.verify and args.pretix_event else None
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        decoder = Decoder(args.backend, formats=formats, fallback=args.fallback)
    except MissingExtra as exc:
        raise CliError(str(exc)) from None
    all_good = True
    for path in args.images:
        started = time.perf_counter()
        try:
            codes = decoder.decode(path)
        except (OSError, ValueError) as exc:  # one bad file does not stop the batch
            print(json.dumps({"path": path, "error": str(exc)}), flush=True)
            all_good = False
            continue
        ms = (time.perf_counter() - started) * 1000
        results = []
        for code in codes:
            result: dict[str, object] = {
                "text": code.text, "bytes": code.bytes.hex(), "format": code.format
            }
            if args.verify:
                verdict = verify_json(code.bytes, trust, pretix)
                all_good = all_good and verdict["valid"] is True
                result["pass"] = verdict
            results.append(result)
        all_good = all_good and bool(codes)
        print(json.dumps({"path": path, "codes": results, "ms": round(ms, 3)}), flush=True)
    return 0 if all_good else 1
