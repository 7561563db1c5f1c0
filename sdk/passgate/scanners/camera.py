"""Codes seen by a camera, through OpenCV's ``VideoCapture`` (``pip install 'passgate[camera]'``).

>>> for scan in CameraScanner(0):              # /dev/video0
...     print(scan.text)

A code held in front of the lens is seen on every frame; the shared ``Dedupe`` with a sliding
``hold_off`` turns that into one scan, however long it is held.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ..decode import Decoder, optional_import
from .base import Scan, ScannerSource, log


class CameraScanner(ScannerSource):
    """Frames from ``device``: an index (``0``), a video file (finite: iteration ends with the
    file) or a stream URL (``rtsp://...``; like a device, reopened every ``retry`` seconds when
    lost). ``hold_off``: seconds a code must be out of view before it scans again."""

    def __init__(
        self,
        device: int | str = 0,
        *,
        hold_off: float = 2.0,
        decoder: Decoder | None = None,
        retry: float = 1.0,
    ) -> None:
        super().__init__(f"camera:{device}", dedupe=hold_off)
        self._cv2 = optional_import("cv2", "camera", "opencv-python-headless")
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        self.device = device
        self.is_file = isinstance(device, str) and "://" not in device
        if isinstance(device, str) and self.is_file and not Path(device).is_file():
            raise FileNotFoundError(f"camera:{device}: no such video file")
        self.decoder = decoder or Decoder()
        self.retry = retry

    def _read(self) -> Generator[Scan, None, None]:
        cv2 = self._cv2
        capture = None
        try:
            while not self._closed.is_set():
                if capture is None:
                    capture = cv2.VideoCapture(self.device)
                    if not capture.isOpened():
                        self._lost(capture, "cannot open")
                        capture = None
                        if self.is_file:
                            return
                        self._closed.wait(self.retry)
                        continue
                    self._online()
                ok, frame = capture.read()
                now = time.monotonic()
                if not ok:
                    if self.is_file:
                        return  # end of the video
                    self._lost(capture, "no frame")
                    capture = None
                    continue
                self._count("frames")
                if frame.ndim == 3:
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                for code in self.decoder.decode(frame):
                    yield Scan(code.bytes, self.source, now)
        finally:
            if capture is not None:
                capture.release()

    def _lost(self, capture: Any, why: str) -> None:
        if self._error(why) or self.health().connected:
            log.warning("%s: %s; retrying every %gs", self.source, why, self.retry)
        self._offline()
        capture.release()
