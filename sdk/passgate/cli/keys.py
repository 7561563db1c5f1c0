"""``passgate keygen``: a new key pair for passes, or for one scope's deny lists."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..keys import ALGORITHMS, TRUST_MANIFEST, generate_private_key, key_id, manifest_entry, write_keypair
from ..wire import KeyPurpose, TrustedKey, bounds
from .common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="create a key pair (private key mode 0600)")
    p.add_argument("--alg", choices=ALGORITHMS, default="ed25519")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the PEM files")
    p.add_argument("--name", default="issuer", help="file name stem (default: issuer)")
    p.add_argument("--purpose", choices=[p.value for p in KeyPurpose], default=KeyPurpose.PASSES.value,
                   help="what the key signs: passes (default), or the deny lists of --scope")
    p.add_argument("--scope", help="the list scope a denylist key signs (its one scope)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    purpose = KeyPurpose(args.purpose)
    if (purpose is KeyPurpose.DENYLIST) != (args.scope is not None):
        raise CliError("--scope goes with --purpose denylist, and a denylist key needs one")
    longest = bounds(TrustedKey, "scope")["max_length"]  # a list key's scope travels in bundles
    if args.scope is not None and not 0 < len(args.scope) <= longest:
        raise CliError(f"--scope: 1 to {longest} characters")
    key = generate_private_key(args.alg)
    priv, pub = write_keypair(key, args.out, args.name)
    print(f"kid {key_id(key).hex()}")
    print(f"private key {priv} (keep it secret; never copy it to a gate)")
    if purpose is KeyPurpose.DENYLIST:
        # A gate trusts a list key only for its scope: the manifest entry says so, beside the key.
        manifest = Path(args.out) / TRUST_MANIFEST
        with manifest.open("a") as f:
            f.write("\n" + manifest_entry(pub.name, purpose=purpose, scope=args.scope))
        print(f"public key  {pub} (signs only the deny lists of scope {args.scope!r}; copy it with "
              f"its entry in {manifest} into each gate's trust directory)")
    else:
        print(f"public key  {pub} (copy it into each gate's trust directory)")
    return 0

