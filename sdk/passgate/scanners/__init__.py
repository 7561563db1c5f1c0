"""Scanner sources: every one is an iterable of ``Scan`` and a context manager, so the gate does
not care where a scan came from.

>>> from passgate.scanners import open_scanner
>>> with open_scanner("serial:/dev/ttyACM0", framing="cr") as scanner:
...     for scan in scanner:
...         print(scan.text, scan.source)

Optional dependencies are imported by the source that needs them, when it is created.
"""

from __future__ import annotations

from typing import Any

from ..decode import MissingExtra
from .base import Scan, ScannerSource
from .camera import CameraScanner
from .dedupe import Dedupe
from .folder import ImageFolderScanner
from .framing import Frame, Framer
from .keyboard import KeyboardScanner, KeyMap
from .serial import SerialScanner
from .stdin import StdinScanner

SPEC_FORMS = (
    "serial:/dev/ttyACM0",
    "serial:loop://",
    "keyboard:/dev/input/event3",
    "camera:0",
    "camera:/path/video.mp4",
    "stdin:",
    "folder:/path",
)
_SOURCES: dict[str, type[ScannerSource]] = {
    "serial": SerialScanner,
    "keyboard": KeyboardScanner,
    "camera": CameraScanner,
    "folder": ImageFolderScanner,
}


def open_scanner(spec: str, **options: Any) -> ScannerSource:
    """Create a source from a config string; ``options`` go to its constructor.

    - ``serial:/dev/ttyACM0`` or ``serial:`` + any pyserial URL (``serial:loop://``,
      ``serial:socket://host:4001``); options ``baud``, ``framing``, ``gap_ms``, ``dedupe``...
    - ``keyboard:/dev/input/event3`` (better: a ``/dev/input/by-id/...-event-kbd`` path)
    - ``camera:0`` (device index), ``camera:/path/video.mp4``, ``camera:rtsp://...``; ``hold_off``
    - ``stdin:`` (one scan a line)
    - ``folder:/path`` (images in a folder); ``watch=True`` to wait for new files
    """
    kind, _, target = spec.partition(":")
    if spec == "stdin:":
        return StdinScanner(**options)
    if kind not in _SOURCES or not target:
        raise ValueError(f"bad scanner spec {spec!r}: use one of {', '.join(SPEC_FORMS)}")
    return _SOURCES[kind](target, **options)


__all__ = [
    "CameraScanner",
    "Dedupe",
    "Frame",
    "Framer",
    "ImageFolderScanner",
    "KeyMap",
    "KeyboardScanner",
    "MissingExtra",
    "Scan",
    "ScannerSource",
    "SerialScanner",
    "StdinScanner",
    "open_scanner",
]
