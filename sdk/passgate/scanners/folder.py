"""Codes in the image files of a folder: for demos (drop a pass image in, the gate opens) and
tests. Needs the ``decode`` extra."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from pathlib import Path

from ..decode import Decoder
from .base import Scan, ScannerSource

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class ImageFolderScanner(ScannerSource):
    """Decode every image in ``path`` in name order. With ``watch=True`` keep looking every
    ``poll`` seconds and decode new or changed files as they appear, until ``close()``."""

    def __init__(
        self,
        path: str | Path,
        *,
        watch: bool = False,
        poll: float = 0.2,
        decoder: Decoder | None = None,
        dedupe: float = 0.0,
    ) -> None:
        super().__init__(f"folder:{path}", dedupe=dedupe)
        self.path = Path(path)
        self.watch = watch
        self.poll = poll
        self.decoder = decoder or Decoder()

    def _read(self) -> Generator[Scan, None, None]:
        done: set[tuple[str, int]] = set()
        while not self._closed.is_set():
            try:
                files = {
                    (p.name, p.stat().st_mtime_ns): p
                    for p in self.path.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES
                }
                self._online()
            except OSError as exc:
                self._offline(str(exc))
                files = {}
            done &= files.keys()  # forget deleted files: memory stays bounded
            for key in sorted(files.keys() - done):
                done.add(key)
                yield from self._decode(files[key])
            if not self.watch or self._closed.wait(self.poll):
                return

    def _decode(self, file: Path) -> Iterator[Scan]:
        try:
            codes = self.decoder.decode(file)
        except (OSError, ValueError) as exc:
            self._drop(f"{file.name}: {exc}")
            return
        t = time.monotonic()
        for code in codes:
            yield Scan(code.bytes, self.source, t)
