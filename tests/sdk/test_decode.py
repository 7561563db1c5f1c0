"""Decoding generated camera-like frames with both back ends (real zxing-cpp and zbar)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import segno
import zxingcpp
from PIL import Image

from passgate.decode import Decoder, decode_image, zbar_available
from tests.parts import require_part

PASS_TEXT = "PG1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEXWK G2EP4J0B"
BINARY = bytes(range(256))


def qr_pixels(payload: str | bytes, module: float = 4.0) -> np.ndarray:
    """The QR code with a 4-module quiet zone, modules ``module`` px wide (may be fractional)."""
    buf = io.BytesIO()
    segno.make_qr(payload, error="m").save(buf, kind="png", scale=4, border=4)
    img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    size = round(img.shape[0] * module / 4)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def frame(payload: str | bytes, module: float = 4.0) -> np.ndarray:
    """A 640x480 gray frame with the code on a mid-gray background, off centre."""
    out = np.full((480, 640), 170, np.uint8)
    code = qr_pixels(payload, module)
    out[40 : 40 + code.shape[0], 120 : 120 + code.shape[1]] = code
    return out


def blur(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img, (5, 5), 1.2)


def noise(img: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)


def low_contrast(img: np.ndarray) -> np.ndarray:
    return (100 + img.astype(np.float32) * (40 / 255)).astype(np.uint8)  # 100..140


def perspective(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[60, 30], [w - 10, 0], [w - 70, h - 20], [0, h - 40]])
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(img, matrix, (w, h), borderValue=170)


def invert(img: np.ndarray) -> np.ndarray:
    return 255 - img  # a phone in dark mode


CONDITIONS = {
    "clean": lambda: frame(PASS_TEXT),
    "blur": lambda: blur(frame(PASS_TEXT)),
    "noise": lambda: noise(frame(PASS_TEXT)),
    "low_contrast": lambda: low_contrast(frame(PASS_TEXT)),
    "perspective": lambda: perspective(frame(PASS_TEXT)),
    "inverted": lambda: invert(frame(PASS_TEXT)),
    "modules_1.5px": lambda: frame(PASS_TEXT, module=1.5),
}


def zbar_decoder(**options: object) -> Decoder:
    require_part(zbar_available(), "libzbar0", "apt-get install libzbar0")
    return Decoder("zbar", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_zxing_decodes_every_condition(condition: str) -> None:
    codes = decode_image(CONDITIONS[condition]())
    assert [c.text for c in codes] == [PASS_TEXT]
    assert codes[0].format == "qr"
    assert len(codes[0].position) == 4


# zbar's QR locator needs about 2 px a module, so 1.5 px modules are zxing-cpp's alone (one reason
# it is the default back end).
@pytest.mark.parametrize("condition", [c for c in CONDITIONS if c != "modules_1.5px"])
def test_zbar_decodes_every_condition_but_tiny_modules(condition: str) -> None:
    codes = zbar_decoder().decode(CONDITIONS[condition]())
    assert [c.text for c in codes] == [PASS_TEXT]
    assert codes[0].format == "qr"


@pytest.mark.parametrize("backend", ["zxing", "zbar"])
def test_binary_payload_round_trips_byte_exact(backend: str) -> None:
    decoder = zbar_decoder() if backend == "zbar" else Decoder()
    codes = decoder.decode(frame(BINARY, module=2))
    assert [c.bytes for c in codes] == [BINARY]
    assert codes[0].text is None  # not UTF-8: no guessed text


def test_utf8_payload_keeps_its_text() -> None:
    text = "Zürich → Gate 3"
    (code,) = decode_image(frame(text.encode()))
    assert code.text == text
    assert code.bytes == text.encode()


def test_empty_and_noise_frames_decode_nothing() -> None:
    rng = np.random.default_rng(1)
    assert decode_image(np.full((480, 640), 128, np.uint8)) == []
    assert decode_image(rng.integers(0, 256, (480, 640), dtype=np.uint8)) == []


def test_accepts_path_pil_image_and_bgr(tmp_path) -> None:
    path = tmp_path / "pass.png"
    Image.fromarray(frame(PASS_TEXT)).save(path)
    assert [c.text for c in decode_image(path)] == [PASS_TEXT]
    assert [c.text for c in decode_image(str(path))] == [PASS_TEXT]
    assert [c.text for c in decode_image(Image.open(path).convert("RGB"))] == [PASS_TEXT]
    bgr = cv2.cvtColor(frame(PASS_TEXT), cv2.COLOR_GRAY2BGR)
    assert [c.text for c in decode_image(bgr)] == [PASS_TEXT]


def test_formats_are_restricted_and_opt_in() -> None:
    aztec = np.full((480, 640), 255, np.uint8)
    symbol = np.asarray(
        zxingcpp.create_barcode(PASS_TEXT, zxingcpp.BarcodeFormat.Aztec).to_image(scale=4)
    )
    aztec[50 : 50 + symbol.shape[0], 50 : 50 + symbol.shape[1]] = symbol
    assert decode_image(aztec) == []  # QR only by default
    assert [c.format for c in decode_image(aztec, formats=("qr", "aztec"))] == ["aztec"]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        Decoder("quirc")
    with pytest.raises(ValueError, match="formats"):
        Decoder(formats=("ean13",))
    with pytest.raises(ValueError, match="8-bit"):
        decode_image(np.zeros((10, 10), np.float32))


def damaged_frame() -> np.ndarray:
    """A code whose finder patterns are intact but whose data is wiped beyond repair: zxing-cpp
    locates the symbol and fails to decode it."""
    img = frame(PASS_TEXT)
    img[40 + 16 + 40 : 40 + 16 + 130, 120 + 16 + 40 : 120 + 16 + 130] = 255
    return img


def test_fallback_runs_only_on_frames_with_an_undecodable_symbol() -> None:
    require_part(zbar_available(), "libzbar0", "apt-get install libzbar0")
    decoder = Decoder(fallback=True)
    assert decoder.decode(np.full((480, 640), 128, np.uint8)) == []
    assert [c.text for c in decoder.decode(frame(PASS_TEXT))] == [PASS_TEXT]
    assert decoder.stats["fallback_runs"] == 0
    assert decoder.decode(damaged_frame()) == []
    assert decoder.stats["fallback_runs"] == 1
    assert decoder.stats == {"frames": 3, "codes": 1, "fallback_runs": 1}
