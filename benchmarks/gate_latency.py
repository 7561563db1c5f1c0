"""Scan-to-relay latency of the whole gate: pty scanner → daemon → MockFactory relay pin.

2,000 distinct passes are written into a real pty like a USB-CDC scanner; for each, the time from
the scanner's last byte to the relay pin going active (a MockFactory pin state change) is taken,
with the durable journal on (WAL, synchronous=FULL, reservation committed before the relay
moves). After each grant a passage edge returns the gate to IDLE. Baselines measured in the same
run: the pty's own delivery time (write on one end, select+read on the other) and one bare
``verify_pass``. Goal (issue 4): p99 <= 10 ms.

    python benchmarks/gate_latency.py [--scans 2000]
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import tempfile
import threading
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPin

from passgate import TrustStore, generate_private_key, issue_pass, verify_pass
from passgate.scanners import SerialScanner
from passgated.config import load_config
from passgated.gate import Gate
from passgated.journal import Journal
from passgated.policy import Direction


class TimedPin(MockPin):
    """A MockPin that timestamps every change to active, so the relay's edge can be timed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.rose = threading.Event()
        self.rose_at = 0.0
        super().__init__(*args, **kwargs)

    def _change_state(self, value: bool) -> bool:
        changed = super()._change_state(value)
        if changed and value:
            self.rose_at = time.perf_counter()
            self.rose.set()
        return changed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pty_floor(rounds: int, payload: bytes) -> list[float]:
    """Write on the master, wait for it on the slave: the transport's own latency, in ms."""
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    samples = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            os.write(master, payload)
            got = 0
            while got < len(payload):
                select.select([slave], [], [], 1.0)
                got += len(os.read(slave, 4096))
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(master)
        os.close(slave)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=2000)
    args = parser.parse_args()

    key = generate_private_key()
    trust = TrustStore()
    trust.add(key.public_key())
    now = time.time()
    passes = [issue_pass(key, valid_from=now - 60, valid_until=now + 3600, zones=["A"], entries=1)
              for _ in range(args.scans)]

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(None, zones=["A"], journal_path=Path(tmp) / "journal.db", pin_factory="mock")
        master, slave = os.openpty()
        # The flood limit (20 scans/s by default) guards against a faulty scanner; this pty feeds
        # the next pass as soon as the gate is ready, far faster than a person can scan.
        scanner = SerialScanner(os.ttyname(slave), dedupe=0, max_rate=1e6)
        gate = Gate(config, pin_factory=MockFactory(pin_class=TimedPin), trust=trust,
                    sources=[(scanner, Direction.ENTRY)], display=False)
        gate.io.fire_loop.pin.drive_low()
        relay, passage = gate.io.relay_entry.pin, gate.io.passage[Direction.ENTRY].pin
        gate.start()
        deadline = time.monotonic() + 5
        while not scanner.health()["connected"] and time.monotonic() < deadline:
            time.sleep(0.01)
        latencies, missed = [], 0
        started = time.perf_counter()
        try:
            for text in passes:
                relay.rose.clear()
                os.write(master, text.encode() + b"\r")
                last_byte = time.perf_counter()
                if not relay.rose.wait(2.0):
                    missed += 1
                    continue
                latencies.append((relay.rose_at - last_byte) * 1000)
                passage.drive_low()
                passage.drive_high()
                gate.wait_settled(5)
            elapsed = time.perf_counter() - started
        finally:
            gate.stop()
            os.close(master)
            os.close(slave)
        journal_ok = Journal(Path(tmp) / "journal.db", "gate-1", recover=False)
        redeemed = len(journal_ok.events("redeemed"))
        journal_ok.close()

    floor = pty_floor(500, passes[0].encode() + b"\r")
    verify_us = []
    for text in passes[:500]:
        start = time.perf_counter()
        verify_pass(text, trust)
        verify_us.append((time.perf_counter() - start) * 1e6)

    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print(f"scans: {args.scans}, relay pulses timed: {len(latencies)}, missed: {missed}, "
          f"redemptions journalled: {redeemed}")
    print(f"scanner last byte -> relay active:  p50 {p50:.2f} ms   p99 {p99:.2f} ms   "
          f"max {max(latencies):.2f} ms   (goal p99 <= 10 ms)")
    rate = len(latencies) / elapsed
    print(f"throughput (scan, grant, passage, commit, one person at a time): {rate:.0f} scans/s")
    print(f"baseline, pty delivery alone:      p50 {statistics.median(floor):.3f} ms")
    print(f"baseline, verify_pass alone:       p50 {statistics.median(verify_us) / 1000:.3f} ms")
    print(f"ratio gate p50 / verify_pass p50:  {p50 / (statistics.median(verify_us) / 1000):.1f}")


if __name__ == "__main__":
    main()
