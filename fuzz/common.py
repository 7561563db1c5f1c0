"""What the harnesses share: fixed keys, the forgery oracle and the atheris entry point.

Keys are derived from fixed seeds so that ``make_corpus.py``, the harnesses under atheris and the
tests all sign and trust the same keys in separate processes. A harness's ``test_one_input`` never
needs atheris: the default test suite calls it directly.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from passgate import cose
from passgate.keys import TrustStore

TARGETS = ("verify_pass", "base45", "cose", "denylist", "config", "framing", "freshness",
           "pretix", "rules", "presentation", "osdp")  # fuzz/fuzz_NAME.py
NOW = 1_800_000_000  # the injected clock: every seed pass is valid at this moment
START_MARK = "passgate-fuzz: fuzzing from "
MAX_LEN = 4096  # the largest input a harness is given (a QR code holds at most 4,296 characters)


def _secret(label: str) -> bytes:
    return hashlib.sha256(b"passgate fuzz " + label.encode()).digest()


ED25519_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(_secret("ed25519"))
ES256_KEY = ec.derive_private_key(int.from_bytes(_secret("es256"), "big") >> 8, ec.SECP256R1())
# Never trusted: seeds signed with it under a trusted kid must be refused, and so must their mutants.
ATTACKER_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(_secret("attacker"))
TRUSTED_KEYS = (ED25519_KEY, ES256_KEY)


def trust_store() -> TrustStore:
    """The trust store every harness verifies against: the two fixed issuer keys."""
    store = TrustStore()
    for key in TRUSTED_KEYS:
        store.add(key.public_key())
    return store


class Forgery(AssertionError):
    """An input verified although nothing the harness signed covers its content."""


def signed_content(envelope: bytes) -> tuple[bytes, bytes]:
    """(protected header bytes, payload) of a COSE_Sign1: what a signature actually covers.

    The oracle compares this, not whole inputs, because a valid signature legitimately survives
    re-encoding (tagged or not, compressed, lower case) and ES256 signatures are randomised.
    """
    msg = cose.decode_sign1(envelope)
    return msg.protected, msg.payload


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run one harness under atheris (``python -m fuzz.fuzz_NAME [libFuzzer flags] [corpus dirs]``).

    ``instrument_all`` after the imports gives libFuzzer coverage of passgate (and of cbor2's and
    the standard library's Python code) without import hooks in the harness modules.
    """
    import atheris

    atheris.instrument_all()
    atheris.Setup([*sys.argv, f"-max_len={MAX_LEN}"], test_one_input)
    # Instrumenting takes seconds: run_all times the fuzzing from here, not from process start.
    print(f"{START_MARK}{time.time()}", file=sys.stderr, flush=True)
    atheris.Fuzz()
