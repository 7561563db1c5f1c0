"""verify_pass against one bare PyNaCl Ed25519 verify, measured in the same run.

Goal (issue 2): median verify_pass / median bare verify <= 1.5, i.e. decoding, CBOR, the
Sig_structure and the claim checks together cost at most half a signature check.

    python benchmarks/verify.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cbor2
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.signing import VerifyKey

from passgate import TrustStore, base45, cose, generate_private_key, issue_pass, verify_pass
from passgate.passes import PREFIX


def timed(fn, rounds: int, batch: int = 20) -> list[float]:
    """Per-call µs, measured in batches so the timer's own cost stays negligible."""
    samples = []
    for _ in range(rounds // batch):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - start) / batch / 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4000)
    args = parser.parse_args()

    key = generate_private_key("ed25519")
    trust = TrustStore()
    trust.add(key.public_key())
    now = time.time()
    text = issue_pass(key, valid_from=now, valid_until=now + 3600, zones=["A"], entries=1)
    msg = cose.decode_sign1(base45.decode(text[len(PREFIX):]))
    tbs = cbor2.dumps(["Signature1", msg.protected, b"", msg.payload])
    verify_key = VerifyKey(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def bare() -> None:
        verify_key.verify(tbs, msg.signature)

    def full() -> None:
        verify_pass(text, trust, now=now)

    es_key = generate_private_key("es256")
    es_trust = TrustStore()
    es_trust.add(es_key.public_key())
    es_text = issue_pass(es_key, valid_from=now, valid_until=now + 3600, zones=["A"], entries=1)

    def full_es256() -> None:
        verify_pass(es_text, es_trust, now=now)

    for fn in (bare, full, full_es256):  # warm up
        timed(fn, 200)
    # Interleave the two so drift on a noisy machine hits both alike.
    bare_s, full_s = [], []
    for _ in range(5):
        bare_s += timed(bare, args.rounds // 5)
        full_s += timed(full, args.rounds // 5)
    es_s = timed(full_es256, max(400, args.rounds // 10))
    b, f = statistics.median(bare_s), statistics.median(full_s)
    print(f"pass length: {len(text)} characters (Ed25519, one zone, entries=1)")
    print(f"bare PyNaCl Ed25519 verify   median {b:7.1f} µs")
    p95 = statistics.quantiles(full_s, n=20)[-1]
    print(f"verify_pass (Ed25519)        median {f:7.1f} µs   p95 {p95:.1f} µs")
    print(f"verify_pass (ES256)          median {statistics.median(es_s):7.1f} µs")
    print(f"ratio verify_pass / bare     {f / b:.2f}   (goal <= 1.5)")


if __name__ == "__main__":
    main()
