"""A batch of issued passes on disk: ``passes.csv`` (``pass_id,text,qr_file``) and one QR image a
pass, written the same way by ``passgate issue --out`` and ``passgate-hub issue --out`` so a
print shop or mail merge reads either."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from .qr import FORMATS, save_qr

__all__ = ["CSV_FIELDS", "CSV_NAME", "write_batch"]

CSV_NAME = "passes.csv"
CSV_FIELDS = ("pass_id", "text", "qr_file")


def write_batch(out: str | Path, passes: Iterable[tuple[str, str]], *, qr: str | None = "png") -> Path:
    """Write ``(pass_id, text)`` pairs as they come (``passes`` may be a generator) to ``out`` and
    return the CSV's path; ``qr``: ``"png"``, ``"svg"`` or ``None`` for no images (``qr_file``
    empty). An existing CSV is refused before anything is consumed: it may hold passes already
    handed out."""
    if qr is not None and f".{qr}" not in FORMATS:
        raise ValueError(f"QR format must be one of {', '.join(f[1:] for f in FORMATS)}")
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CSV_NAME
    try:
        f = path.open("x", newline="")
    except FileExistsError:
        raise ValueError(f"{path} already exists; choose an empty directory") from None
    with f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for pass_id, text in passes:
            qr_file = save_qr(text, directory / f"{pass_id}.{qr}").name if qr else ""
            writer.writerow([pass_id, text, qr_file])
    return path
