"""verify_pass, and a gate's whole decision on a scan, against one bare PyNaCl Ed25519 verify.

Two goals ("Fleet scale" issue), each on the median of three runs in one invocation, every run
measuring its own baseline (a bare PyNaCl verify of the same Sig_structure), interleaved with the
rest so that a noisy machine's drift hits all alike:

(a) ``verify_pass`` / bare verify <= 1.5: Base45, zlib check, CBOR, the Sig_structure, the key's
    window and the claim checks together cost at most half a signature check.
(b) verify + decide / bare verify <= 1.7: what the control loop does with a scan before it records
    the decision and moves the relay (``gate.loop.decide``, the gate's own ``_decide``): verification,
    both deny lists, the stale check, the policy and the journal's usage lookup, on a real gate
    built from its config with a SQLite journal of ``--passages`` passages in a temporary directory.
    The durable record after it (an fsync) is ``gate_latency.py``'s figure, not this one.
(c) ``verify_pass`` of a ``PG2:`` presentation (a holder-bound pass with its holder's signature) /
    (bare issuer verify + bare P-256 verify of the holder's signature) <= 1.5: both signatures are the
    cost, everything else together at most half of them. Also with an ES256 issuer (the bare issuer
    verify then ``cryptography``'s P-256 verify of the pass's Sig_structure).

And the cost of a presentation's size for the camera: ``passgate.decode`` on a 1080p frame holding a
presentation QR code, beside one holding a PG1 pass, both drawn 600 px wide (one phone, one distance)
and both 300 px wide (the phone twice as far: a version 13 code's modules under 4 px), medians over
``--frames`` frames each, interleaved.

    python benchmarks/verify.py [--rounds 4000] [--passages 10000] [--list-entries 100000] [--frames 40]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
import numpy as np
import segno
from bigjournal import make_journal
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from gpiozero.pins.mock import MockFactory
from nacl.signing import VerifyKey
from PIL import Image

from passgate import TrustStore, base45, cose, generate_private_key, issue_pass, verify_pass
from passgate.decode import Decoder
from passgate.denylist import DenyList
from passgate.holder import decode_presentation, present, signed_bytes
from passgate.passes import PREFIX
from passgate.scanners import Scan
from passgated.config import load_config
from passgated.gate import Gate
from passgated.policy import Direction

RUNS = 3
BATCH = 20  # calls timed together, so the timer's own cost stays negligible
SCOPE = "acme"


def batch_us(fn: Callable[[], object]) -> float:
    """Per-call µs of one batch of ``BATCH`` calls."""
    start = time.perf_counter_ns()
    for _ in range(BATCH):
        fn()
    return (time.perf_counter_ns() - start) / BATCH / 1000


def make_gate(tmp: Path, trust: TrustStore, passages: int, list_entries: int) -> Gate:
    """A gate as its config builds it: a journal of ``passages`` passages, and revoked and blocked
    lists of ``list_entries`` entries each (fresh, so no admit is flagged for a check)."""
    make_journal(tmp / "journal.db", passages)
    lists = tmp / "lists"
    lists.mkdir()
    for kind in ("revoked", "blocked"):
        ids = [os.urandom(16) for _ in range(list_entries)]
        DenyList.from_ids(ids, kind=kind, scope=SCOPE).save(lists / f"{kind}.pgdl")
    config = load_config(None, zones=["A"], journal_path=tmp / "journal.db", pin_factory="mock",
                         denylist_dir=lists, denylist_scope=SCOPE, denylist_kinds=("revoked", "blocked"))
    gate = Gate(config, pin_factory=MockFactory(), trust=trust, sources=[], display=False)
    gate.io.fire_loop.pin.drive_low()  # the fire loop closed and healthy, as on a working gate
    return gate


def one_run(kinds: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median µs of each kind over one run: batches taken in turn (bare, full, decide, bare, ...), so
    that whatever else this machine runs meanwhile slows each kind alike."""
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(rounds // BATCH):
        for name, fn in kinds.items():
            samples[name].append(batch_us(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def frame_1080p(text: str, width: int = 600) -> np.ndarray:
    """A 1920x1080 gray frame with the QR code of ``text`` (level M, 4-module quiet zone) drawn
    ``width`` px wide, off centre, area-averaged as a camera sees it."""
    buf = io.BytesIO()
    segno.make(text, error="M", mode="alphanumeric", micro=False).save(buf, kind="png", scale=1, border=4)
    code = Image.open(io.BytesIO(buf.getvalue())).convert("L").resize((width, width), Image.Resampling.BOX)
    out = np.full((1080, 1920), 170, np.uint8)
    out[200 : 200 + width, 700 : 700 + width] = np.asarray(code)
    return out


def decode_ms(frames: dict[str, tuple[str, np.ndarray]], count: int) -> dict[str, list[float]]:
    """ms per ``Decoder().decode`` of each frame, taken in turn; each must give back its text."""
    decoder = Decoder()
    times: dict[str, list[float]] = {name: [] for name in frames}
    for _ in range(count):
        for name, (text, pixels) in frames.items():
            start = time.perf_counter_ns()
            codes = decoder.decode(pixels)
            times[name].append((time.perf_counter_ns() - start) / 1e6)
            assert [c.text for c in codes] == [text], (name, codes)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4000, help="calls of each kind per run")
    parser.add_argument("--passages", type=int, default=10_000, help="passages in the gate's journal")
    parser.add_argument("--list-entries", type=int, default=100_000, help="entries in each deny list")
    parser.add_argument("--frames", type=int, default=40, help="1080p frames decoded of each kind")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    key = generate_private_key("ed25519")
    trust = TrustStore()
    trust.add(key.public_key())
    now = time.time()
    text = issue_pass(key, valid_from=now - 60, valid_until=now + 3600, zones=["A"], entries=1)
    msg = cose.decode_sign1(base45.decode(text[len(PREFIX):]))
    tbs = cbor2.dumps(["Signature1", msg.protected, b"", msg.payload])
    verify_key = VerifyKey(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    es_key = generate_private_key("es256")
    es_trust = TrustStore()
    es_trust.add(es_key.public_key())
    es_text = issue_pass(es_key, valid_from=now - 60, valid_until=now + 3600, zones=["A"], entries=1)

    # A presentation: a bound pass (a season ticket's claims) and its holder's signature, made now.
    holder = ec.generate_private_key(ec.SECP256R1())
    season = dict(valid_from=now - 60, valid_until=now + 365 * 86400, zones=["NORTH", "SOUTH"], entries=100,
                  product="SEASON", issuer="FC Example", holder_key=holder.public_key())
    bound = issue_pass(key, **season)  # type: ignore[arg-type]
    shown = present(bound, holder, now=now)
    es_shown = present(issue_pass(es_key, **season), holder, now=now)  # type: ignore[arg-type]
    _, step, sig = decode_presentation(shown)
    holder_der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    holder_signed = signed_bytes(verify_pass(bound, trust, now=now).pass_id, step)
    holder_public, ecdsa = holder.public_key(), ec.ECDSA(hashes.SHA256())
    es_msg = cose.decode_sign1(base45.decode(es_text[len(PREFIX):]))
    es_tbs, es_public = es_msg.to_be_signed(), es_key.public_key()
    es_der = encode_dss_signature(int.from_bytes(es_msg.signature[:32], "big"),
                                  int.from_bytes(es_msg.signature[32:], "big"))
    assert verify_pass(shown, trust, now=now).holder_verified
    assert verify_pass(es_shown, es_trust, now=now).holder_verified

    with tempfile.TemporaryDirectory() as tmp:
        gate = make_gate(Path(tmp), trust, args.passages, args.list_entries)
        scan = Scan(text.encode(), "bench", time.monotonic())
        try:
            decision = gate.loop.decide(scan, Direction.ENTRY)
            assert decision.admit and not decision.guard_check, decision

            def bare() -> None:
                verify_key.verify(tbs, msg.signature)

            def full() -> None:
                verify_pass(text, trust, now=now)

            def decide() -> None:
                gate.loop.decide(scan, Direction.ENTRY)

            def full_es256() -> None:
                verify_pass(es_text, es_trust, now=now)

            def bare_p256() -> None:
                holder_public.verify(holder_der, holder_signed, ecdsa)

            def bare_es256() -> None:
                es_public.verify(es_der, es_tbs, ecdsa)

            def presentation() -> None:
                verify_pass(shown, trust, now=now)

            def presentation_es256() -> None:
                verify_pass(es_shown, es_trust, now=now)

            kinds = {"bare": bare, "full": full, "decide": decide, "es256": full_es256, "p256": bare_p256,
                     "pg2": presentation, "bare_es256": bare_es256, "pg2_es256": presentation_es256}
            one_run(kinds, 10 * BATCH)  # warm up
            runs = [one_run(kinds, args.rounds) for _ in range(RUNS)]
        finally:
            gate.stop()

    print(f"pass length: {len(text)} characters (Ed25519, one zone, entries=1); journal of "
          f"{args.passages:,} passages; revoked and blocked lists of {args.list_entries:,} entries each")
    print(f"presentation length: {len(shown)} characters (Ed25519 issuer; {len(es_shown)} ES256), QR version "
          f"{segno.make(shown, error='M', mode='alphanumeric', micro=False).version} at M; its pass as PG1: "
          f"{len(bound)} characters")
    for i, run in enumerate(runs, 1):
        print(f"run {i}: bare PyNaCl verify {run['bare']:6.1f} µs   verify_pass {run['full']:6.1f} µs "
              f"(ES256 {run['es256']:6.1f} µs)   verify + decide {run['decide']:6.1f} µs   "
              f"ratios {run['full'] / run['bare']:.2f} / {run['decide'] / run['bare']:.2f}")
    for name, what, goal in (("full", "verify_pass / bare     ", 1.5),
                             ("decide", "verify + decide / bare ", 1.7)):
        ratios = [run[name] / run["bare"] for run in runs]
        print(f"ratio {what} median {statistics.median(ratios):.2f}   runs "
              f"{', '.join(f'{r:.2f}' for r in ratios)}   (goal <= {goal})")
    for pg2, issuer_bare, what in (("pg2", "bare", "PG2 / (bare + P-256)   "),
                                   ("pg2_es256", "bare_es256", "PG2 ES256 / (ES256 + P-256)")):
        ratios = [run[pg2] / (run[issuer_bare] + run["p256"]) for run in runs]
        print(f"ratio {what} median {statistics.median(ratios):.2f}   runs "
              f"{', '.join(f'{r:.2f}' for r in ratios)}   (goal <= 1.5)")
    for name, what in (("bare", "bare PyNaCl verify     "), ("full", "verify_pass (Ed25519)  "),
                       ("es256", "verify_pass (ES256)    "), ("decide", "verify + decide        "),
                       ("p256", "bare P-256 verify      "), ("pg2", "verify_pass PG2        "),
                       ("bare_es256", "bare ES256 verify      "), ("pg2_es256", "verify_pass PG2 (ES256)")):
        values = [run[name] for run in runs]
        print(f"{what} median {statistics.median(values):6.1f} µs   runs "
              f"{', '.join(f'{v:.1f}' for v in values)}")

    frames = {f"{name}, {width} px": (code, frame_1080p(code, width))
              for width in (600, 300) for name, code in (("PG1 pass", bound), ("PG2 presentation", shown))}
    decode_ms(frames, 3)  # warm up
    for name, samples in decode_ms(frames, args.frames).items():
        version = segno.make(frames[name][0], error="M", mode="alphanumeric", micro=False).version
        p90 = sorted(samples)[int(0.9 * (len(samples) - 1))]
        print(f"decode 1080p frame, {name:24} (QR version {version:2}): median "
              f"{statistics.median(samples):6.2f} ms   p90 {p90:6.2f} ms")


if __name__ == "__main__":
    main()
