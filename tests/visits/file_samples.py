"""Small real files built from their specifications' byte layouts, for the file-item tests.

PNG: the 8-byte signature and IHDR/IDAT/IEND chunks with their CRC-32 (PNG spec, 2nd ed., §5.2-5.3,
§11.2); JPEG: Pillow's encoder, checked against the SOI marker FF D8 (ITU-T T.81 §B.1.1.3); PDF: the
"%PDF-1.4" header, one page and the trailer (ISO 32000-1 §7.5)."""

import io
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int = 64, height: int = 48, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """An 8-bit RGB PNG of one colour (filter type 0 on every scanline)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def jpeg(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="JPEG")
    data = out.getvalue()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"  # SOI ... EOI
    return data


def pdf() -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out
