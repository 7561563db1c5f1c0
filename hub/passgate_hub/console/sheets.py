"""Printable sheets of passes: A4 pages of QR codes, each with its product and pass id, as one PDF
(Pillow draws the pages; no PDF library or font file is needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from passgate.qr import make_qr

DPI = 150
PAGE = (1240, 1754)  # A4 at 150 dpi
COLUMNS, ROWS = 3, 4
MARGIN = 70


def pdf_sheet(passes: Sequence[tuple[str, str]], caption: str) -> bytes:
    """``(pass_id, text)`` pairs as a PDF of ``sheet_pages``."""
    pages = sheet_pages(passes, caption)
    out = io.BytesIO()
    pages[0].save(out, format="PDF", resolution=DPI, save_all=True, append_images=pages[1:])
    return out.getvalue()


def sheet_pages(passes: Sequence[tuple[str, str]], caption: str) -> list[Image.Image]:
    """The pages: ``COLUMNS`` × ``ROWS`` passes a page, each QR code with ``caption`` (a product,
    a venue) and its pass id under it, cut lines between them."""
    cell_w = (PAGE[0] - 2 * MARGIN) // COLUMNS
    cell_h = (PAGE[1] - 2 * MARGIN) // ROWS
    qr_side = min(cell_w, cell_h) - 90
    font = ImageFont.load_default(size=22)
    small = ImageFont.load_default(size=17)
    pages: list[Image.Image] = []
    for first in range(0, len(passes), COLUMNS * ROWS):
        page = Image.new("L", PAGE, 255)
        draw = ImageDraw.Draw(page)
        for n, (pass_id, text) in enumerate(passes[first:first + COLUMNS * ROWS]):
            x = MARGIN + (n % COLUMNS) * cell_w
            y = MARGIN + (n // COLUMNS) * cell_h
            draw.rectangle((x, y, x + cell_w, y + cell_h), outline=190)  # where to cut
            png = io.BytesIO()
            make_qr(text).save(png, kind="png", scale=10, border=2)
            code = Image.open(png).convert("L").resize((qr_side, qr_side), Image.Resampling.NEAREST)
            page.paste(code, (x + (cell_w - qr_side) // 2, y + 14))
            for line, (words, face) in enumerate(((caption, font), (pass_id, small))):
                width = draw.textlength(words, font=face)
                draw.text((x + (cell_w - width) / 2, y + qr_side + 24 + line * 30), words, fill=0, font=face)
        pages.append(page)
    return pages
