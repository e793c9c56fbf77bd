"""PDF checks with poppler-utils (an independent reader, not the library that wrote the file):
the text pdftotext extracts, and page 1 rendered to PNG by pdftoppm."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from PIL import Image


def pdf_text(data: bytes) -> str:
    """The PDF's text in reading order, each run of white space (a line wrapped in a table cell)
    made one space."""
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()
    return re.sub(r"\s+", " ", text)


def first_page_png(data: bytes, keep_as: str | None = None) -> Path:
    """Page 1 rendered to PNG at 60 dpi; `keep_as` also copies it (and the PDF) under /tmp/pdfs/ to look at."""
    folder = Path(tempfile.mkdtemp(prefix="pdf-png-"))
    (folder / "in.pdf").write_bytes(data)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", str(folder / "in.pdf"), str(folder / "page")],
                   check=True, capture_output=True)
    png = folder / "page.png"
    if keep_as:
        Path("/tmp/pdfs").mkdir(exist_ok=True)
        (Path("/tmp/pdfs") / keep_as).write_bytes(png.read_bytes())
        (Path("/tmp/pdfs") / keep_as).with_suffix(".pdf").write_bytes(data)
    return png


def ink_fraction(png: Path) -> float:
    """The share of pixels darker than light grey: 0 for a blank page."""
    image = Image.open(png).convert("L")
    histogram = image.histogram()
    dark = sum(histogram[:200])
    return dark / (image.width * image.height)


def page_count(data: bytes) -> int:
    info = subprocess.run(["pdfinfo", "-"], input=data, capture_output=True, check=True).stdout.decode()
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
