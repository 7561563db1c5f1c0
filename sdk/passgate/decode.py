"""Find QR codes in images and camera frames; return their payloads byte-exact.

>>> from passgate.decode import decode_image
>>> for code in decode_image("pass.png"):
...     print(code.format, code.text)

Two back ends, both optional extras imported only when first used:

- ``zxing`` (default, ``pip install 'passgate[decode]'``): zxing-cpp ships wheels and needs no
  system library; it reads more real-world codes than zbar and is several times faster.
- ``zbar`` (``pip install 'passgate[zbar]'`` plus ``apt-get install libzbar0``): driven through
  pyzbar's ctypes wrapper with zbar's *binary* option, because ``pyzbar.decode`` re-encodes
  binary payloads as UTF-8 text and so corrupts them.

Formats are restricted to QR by default: every extra symbology is searched on every frame, so
Aztec alone triples the cost of a noisy frame and 1-D formats read noise as barcodes.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# Our format names -> zxing-cpp's names (for ``barcode_formats_from_str``, which accepts a list
# in zxing-cpp 2.x and 3.x alike).
ZXING_FORMATS = {
    "qr": "QRCode",
    "micro_qr": "MicroQRCode",
    "aztec": "Aztec",
    "datamatrix": "DataMatrix",
    "pdf417": "PDF417",
}
# zbar's symbol type numbers (zbar.h ``zbar_symbol_type_e``); zbar reads no Aztec or Data Matrix.
ZBAR_SYMBOLS = {"qr": 64, "pdf417": 57}
BACKENDS = ("zxing", "zbar")
DEFAULT_FORMATS = ("qr",)

# zbar.h ``zbar_config_e`` (zbar >= 0.23): keep payload bytes as read; retry inverted images.
_ZBAR_CFG_ENABLE = 0
_ZBAR_CFG_BINARY = 4
_ZBAR_CFG_TEST_INVERTED = 0x81
_ZBAR_FOURCC_Y800 = 0x30303859  # "Y800": 8-bit grayscale


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


def optional_import(module: str, extra: str, package: str) -> ModuleType:
    """Import an optional dependency, or explain which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'passgate[{extra}]'"
        if "zbar" in str(exc) and package == "pyzbar":
            hint += " and apt-get install libzbar0"
        raise MissingExtra(f"{package} is needed here ({exc}): {hint}") from exc


def utf8_or_none(data: bytes) -> str | None:
    """A payload as UTF-8 text, or None when it is not UTF-8 (a binary code): never a guess."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class Code:
    """One decoded symbol. ``bytes`` is the payload exactly as encoded; ``text`` its UTF-8
    reading (None when the payload is not UTF-8); ``position`` the corners, clockwise from the
    top left, in pixels."""

    bytes: bytes
    format: str
    position: tuple[tuple[int, int], ...]

    @property
    def text(self) -> str | None:
        return utf8_or_none(self.bytes)


def zbar_available() -> bool:
    """Whether the zbar back end can run (pyzbar installed and libzbar0 found)."""
    try:
        import pyzbar.pyzbar  # noqa: F401
    except ImportError:
        return False
    return True


class Decoder:
    """A configured decoder; reuse one per camera (``decode_image`` keeps one per setting).

    ``fallback=True`` (zxing back end only) re-reads a frame with zbar, but only when zxing-cpp
    located a symbol it could not decode, so frames without a code cost nothing extra.
    ``stats`` counts frames, codes found and fallback runs (what a status page shows).
    """

    def __init__(
        self,
        backend: str = "zxing",
        *,
        formats: Sequence[str] = DEFAULT_FORMATS,
        fallback: bool = False,
        try_invert: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown decoder backend {backend!r}: use one of {BACKENDS}")
        unknown = [f for f in formats if f not in ZXING_FORMATS]
        if unknown or not formats:
            raise ValueError(f"unknown formats {unknown}: choose from {sorted(ZXING_FORMATS)}")
        self.backend = backend
        self.formats = tuple(formats)
        self.try_invert = try_invert
        self.fallback = fallback and backend == "zxing"
        self.stats = {"frames": 0, "codes": 0, "fallback_runs": 0}
        self._zxing: Any = None
        self._zbar: _Zbar | None = None
        if backend == "zxing":
            self._zxing = optional_import("zxingcpp", "decode", "zxing-cpp")
            self._zxing_formats = self._zxing.barcode_formats_from_str(
                ",".join(ZXING_FORMATS[f] for f in self.formats)
            )
        if backend == "zbar" or self.fallback:
            symbols = [ZBAR_SYMBOLS[f] for f in self.formats if f in ZBAR_SYMBOLS]
            if backend == "zbar" and not symbols:
                raise ValueError(f"zbar reads none of {self.formats}; use the zxing backend")
            self._zbar = _Zbar(symbols, try_invert)

    def decode(self, image: Any) -> list[Code]:
        """Decode a grayscale (or BGR) numpy array, a PIL image or an image file path."""
        pixels = _as_array(image)
        zbar_only = self._zxing is None
        codes = self._zbar.decode(pixels) if zbar_only else self._decode_zxing(pixels)  # type: ignore[union-attr]
        self.stats["frames"] += 1
        self.stats["codes"] += len(codes)
        return codes

    def _decode_zxing(self, pixels: Any) -> list[Code]:
        found = self._zxing.read_barcodes(
            pixels,
            formats=self._zxing_formats,
            try_invert=self.try_invert,
            return_errors=self.fallback,
        )
        codes = [_zxing_code(b) for b in found if b.valid]
        if self.fallback and len(codes) < len(found):
            self.stats["fallback_runs"] += 1
            seen = {c.bytes for c in codes}
            codes += [c for c in self._zbar.decode(pixels) if c.bytes not in seen]  # type: ignore[union-attr]
        return codes


_decoders: dict[tuple[Any, ...], Decoder] = {}
_decoders_lock = threading.Lock()


def decode_image(
    image: Any,
    *,
    backend: str = "zxing",
    formats: Sequence[str] = DEFAULT_FORMATS,
    fallback: bool = False,
) -> list[Code]:
    """Decode the codes in a grayscale numpy array, a PIL image or a path (see ``Decoder``)."""
    key = (backend, tuple(formats), fallback)
    decoder = _decoders.get(key)
    if decoder is None:
        with _decoders_lock:
            decoder = _decoders.setdefault(key, Decoder(backend, formats=formats, fallback=fallback))
    return decoder.decode(image)


def _as_array(image: Any) -> Any:
    """A numpy array for the back ends: paths and PIL images become 8-bit grayscale."""
    if isinstance(image, str | Path):
        image_module = optional_import("PIL.Image", "decode", "Pillow")
        with image_module.open(image) as opened:
            image = opened.convert("L")
    np = optional_import("numpy", "decode", "numpy")
    if not isinstance(image, np.ndarray):
        if getattr(image, "mode", "L") != "L":
            image = image.convert("L")
        image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected an 8-bit grayscale or BGR image, got {image.dtype} {image.shape}")
    return image


def _zxing_code(barcode: Any) -> Code:
    p = barcode.position
    corners = (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
    return Code(
        bytes=bytes(barcode.bytes),
        format=_FORMAT_NAMES.get(barcode.format.name, barcode.format.name.lower()),
        position=tuple((c.x, c.y) for c in corners),
    )


_FORMAT_NAMES = {v: k for k, v in ZXING_FORMATS.items()}
_ZBAR_NAMES = {v: k for k, v in ZBAR_SYMBOLS.items()}


class _Zbar:
    """zbar through pyzbar's ctypes wrapper, configured for raw bytes (pyzbar.decode is not)."""

    def __init__(self, symbols: Iterable[int], try_invert: bool) -> None:
        optional_import("pyzbar.pyzbar", "zbar", "pyzbar")
        from ctypes import c_void_p, cast, string_at

        from pyzbar import wrapper

        self._w, self._cast, self._c_void_p, self._string_at = wrapper, cast, c_void_p, string_at
        self._symbols = tuple(symbols)
        self._try_invert = try_invert
        self._local = threading.local()  # a zbar scanner is not thread-safe

    def _scanner(self) -> Any:
        scanner = getattr(self._local, "scanner", None)
        if scanner is None:
            w = self._w
            scanner = w.zbar_image_scanner_create()
            w.zbar_image_scanner_set_config(scanner, 0, _ZBAR_CFG_ENABLE, 0)
            for symbol in self._symbols:
                w.zbar_image_scanner_set_config(scanner, symbol, _ZBAR_CFG_ENABLE, 1)
                w.zbar_image_scanner_set_config(scanner, symbol, _ZBAR_CFG_BINARY, 1)
            if self._try_invert:
                w.zbar_image_scanner_set_config(scanner, 0, _ZBAR_CFG_TEST_INVERTED, 1)
            self._local.scanner = scanner
        return scanner

    def decode(self, pixels: Any) -> list[Code]:
        if pixels.ndim == 3:  # BGR -> luma (ITU-R BT.601), what zbar's Y800 expects
            pixels = (pixels[..., :3] @ [0.114, 0.587, 0.299]).astype("uint8")
        w = self._w
        data = pixels.tobytes()
        height, width = pixels.shape[:2]
        image = w.zbar_image_create()
        try:
            w.zbar_image_set_format(image, _ZBAR_FOURCC_Y800)
            w.zbar_image_set_size(image, width, height)
            w.zbar_image_set_data(image, self._cast(data, self._c_void_p), len(data), None)
            if w.zbar_scan_image(self._scanner(), image) <= 0:
                return []
            codes = []
            symbol = w.zbar_image_first_symbol(image)
            while symbol:
                payload = self._string_at(
                    w.zbar_symbol_get_data(symbol), w.zbar_symbol_get_data_length(symbol)
                )
                n = w.zbar_symbol_get_loc_size(symbol)
                corners = tuple(
                    (w.zbar_symbol_get_loc_x(symbol, i), w.zbar_symbol_get_loc_y(symbol, i))
                    for i in range(n)
                )
                kind = _ZBAR_NAMES.get(symbol.contents.type, str(symbol.contents.type))
                codes.append(Code(bytes=payload, format=kind, position=corners))
                symbol = w.zbar_symbol_next(symbol)
            return codes
        finally:
            w.zbar_image_destroy(image)
