"""``passgate keygen``: a new issuer key pair."""

from __future__ import annotations

import argparse

from ..keys import ALGORITHMS, generate_private_key, key_id, write_keypair


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="create an issuer key pair (private key mode 0600)")
    p.add_argument("--alg", choices=ALGORITHMS, default="ed25519")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the PEM files")
    p.add_argument("--name", default="issuer", help="file name stem (default: issuer)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    key = generate_private_key(args.alg)
    priv, pub = write_keypair(key, args.out, args.name)
    print(f"kid {key_id(key).hex()}")
    print(f"private key {priv} (keep it secret; never copy it to a gate)")
    print(f"public key  {pub} (copy it into each gate's trust directory)")
    return 0
