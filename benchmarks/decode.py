"""How much ``decode_image`` costs over raw zxing-cpp, and how both compare with pyzbar.

    .venv/bin/python benchmarks/decode.py [--rounds 200]

Frames are 640x480 grayscale: a pass QR code, an empty scene, and sensor noise. Every variant
runs on the same frames in the same process, interleaved round by round in a rotating order, so
drift (CPU frequency, other load) hits all of them alike. Goal: median of ``decode_image``
<= 1.1x raw zxing-cpp on every kind, including empty frames with the zbar fallback enabled.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import segno
import zxingcpp
from PIL import Image

from passgate.decode import Decoder, zbar_available

PASS_TEXT = "PG1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEXWK G2EP4J0B" * 2


def frames() -> dict[str, np.ndarray]:
    buf = io.BytesIO()
    segno.make_qr(PASS_TEXT, error="m").save(buf, kind="png", scale=4, border=4)
    code = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    with_code = np.full((480, 640), 170, np.uint8)
    with_code[60 : 60 + code.shape[0], 150 : 150 + code.shape[1]] = code
    rng = np.random.default_rng(0)
    return {
        "code": with_code,
        "empty": np.full((480, 640), 170, np.uint8),
        "noise": rng.integers(0, 256, (480, 640), dtype=np.uint8),
    }


def variants() -> dict[str, Callable[[np.ndarray], object]]:
    qr = zxingcpp.barcode_formats_from_str("QRCode")
    found: dict[str, Callable[[np.ndarray], object]] = {
        "raw zxing-cpp (QR)": lambda f: zxingcpp.read_barcodes(f, formats=qr),
        "decode_image": Decoder().decode,
    }
    if zbar_available():
        from pyzbar import pyzbar

        found["decode_image fallback"] = Decoder(fallback=True).decode
        found["decode_image zbar"] = Decoder("zbar").decode
        found["raw pyzbar (QR)"] = lambda f: pyzbar.decode(f, symbols=[pyzbar.ZBarSymbol.QRCODE])
    found["raw zxing-cpp (all formats)"] = lambda f: zxingcpp.read_barcodes(f)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    kinds, funcs = frames(), variants()
    if "raw pyzbar (QR)" not in funcs:
        print("pyzbar/libzbar0 not available: zbar rows skipped (apt-get install libzbar0)")
    times = {(k, v): [] for k in kinds for v in funcs}
    order = list(funcs.items())
    for n in range(rounds):
        rotated = order[n % len(order) :] + order[: n % len(order)]  # no variant always first
        for kind, frame in kinds.items():
            for name, func in rotated:
                started = time.perf_counter()
                func(frame)
                times[kind, name].append((time.perf_counter() - started) * 1000)
    baseline = "raw zxing-cpp (QR)"
    print(f"{'frame':6} {'variant':28} {'median ms':>10} {'p95 ms':>8} {'x raw zxing':>12}")
    for kind in kinds:
        base = statistics.median(times[kind, baseline])
        for name in funcs:
            samples = sorted(times[kind, name])
            median = statistics.median(samples)
            p95 = samples[int(0.95 * (len(samples) - 1))]
            print(f"{kind:6} {name:28} {median:10.3f} {p95:8.3f} {median / base:11.2f}x")
        print()


if __name__ == "__main__":
    main()
