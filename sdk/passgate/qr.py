"""Render passes as QR codes with segno (pure Python; PNG and SVG).

PG1 text is all in the QR alphanumeric alphabet, so segno picks alphanumeric mode (5.5 bits a
character) and the code stays small. Error correction M is the floor: paper gets creased and
phone screens glare.
"""

from __future__ import annotations

from pathlib import Path

import segno

FORMATS = (".png", ".svg")


def make_qr(text: str) -> segno.QRCode:
    """The QR code for a pass text (error correction at least M, no Micro QR)."""
    return segno.make_qr(text, error="m", boost_error=True)


def save_qr(text: str, path: str | Path, *, scale: int = 8, border: int = 4) -> Path:
    """Write the QR code of ``text`` to a ``.png`` or ``.svg`` file."""
    target = Path(path)
    if target.suffix.lower() not in FORMATS:
        raise ValueError(f"{target}: QR output must end in .png or .svg")
    make_qr(text).save(str(target), scale=scale, border=border)
    return target
