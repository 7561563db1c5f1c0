"""A batch of issued passes on disk: ``passes.csv`` (``pass_id,text,qr_file``) and one QR image a
pass, written the same way by ``passgate issue --out`` and ``passgate-hub issue --out`` so a
print shop or mail merge reads either."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from .qr import FORMATS, save_qr

__all__ = ["CSV_FIELDS", "CSV_NAME", "write_batch", "write_table"]

CSV_NAME = "passes.csv"
CSV_FIELDS = ("pass_id", "text", "qr_file")


def write_batch(out: str | Path, passes: Iterable[tuple[str, str]], *, qr: str | None = "png") -> Path:
    """Write ``(pass_id, text)`` pairs as they come (``passes`` may be a generator) to ``out`` and
    return the CSV's path; ``qr``: ``"png"``, ``"svg"`` or ``None`` for no images (``qr_file``
    empty). An existing CSV is refused before anything is consumed: it may hold passes already
    handed out."""
    return write_table(out, CSV_NAME, CSV_FIELDS, passes, qr=qr)


def write_table(out: str | Path, name: str, fields: Sequence[str], rows: Iterable[tuple[str, ...]], *,
                qr: str | None = "png") -> Path:
    """Write rows as they come to ``out/name`` under the header ``fields`` (its last one the image's
    file name): each row is a pass id, the text its QR image shows, then any further columns
    (``passgate-hub``'s claim links use it too). Refused before anything is consumed when the file
    exists: what it holds may be handed out already."""
    if qr is not None and f".{qr}" not in FORMATS:
        raise ValueError(f"QR format must be one of {', '.join(f[1:] for f in FORMATS)}")
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    try:
        f = path.open("x", newline="")
    except FileExistsError:
        raise ValueError(f"{path} already exists; choose an empty directory") from None
    with f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for row in rows:
            qr_file = save_qr(row[1], directory / f"{row[0]}.{qr}").name if qr else ""
            writer.writerow([*row, qr_file])
    return path
