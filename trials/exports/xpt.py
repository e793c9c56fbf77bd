"""A streaming writer of SAS transport files, version 5 (SAS Technical Support document TS-140,
"The record layout of a data set in SAS transport (XPORT) format").

The file is a library header, one member (the dataset): its descriptor, one 140-byte NAMESTR per
variable, then the observations, each `sum(lengths)` bytes, written back to back and the last
80-byte record padded with blanks. Character values are blank-padded ASCII; numbers are IBM
System/370 double-precision floating point (8 bytes, big-endian: sign, 7-bit excess-64 base-16
exponent, 56-bit fraction), a missing number is "." (0x2E) followed by seven zero bytes.

The observations are written a chunk at a time (`XptWriter.write_rows` takes columns of one chunk
as numpy arrays), so the writer holds one chunk of bytes whatever the size of the dataset; unlike
pyreadstat.write_xport, no DataFrame of the whole dataset is built.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import BinaryIO

import numpy as np

RECORD = 80
NAMESTR_LENGTH = 140
CHAR, NUM = 2, 1  # NAMESTR ntype
MISSING = b"." + b"\0" * 7
SAS_VERSION = "6.06"
OS_NAME = "EDC"

LIBRARY_HEADER = "HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!000000000000000000000000000000  "
MEMBER_HEADER = "HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140  "
DESCRIPTOR_HEADER = "HEADER RECORD*******DSCRPTR HEADER RECORD!!!!!!!000000000000000000000000000000  "
OBS_HEADER = "HEADER RECORD*******OBS     HEADER RECORD!!!!!!!000000000000000000000000000000  "


def _namestr_header(count: int) -> str:
    return f"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000{count:04d}00000000000000000000  "


def sas_datetime(moment: datetime) -> str:
    """ddMMMyy:hh:mm:ss, as the headers spell dates."""
    return moment.strftime("%d%b%y:%H:%M:%S").upper()


def _text(value: str, width: int) -> bytes:
    return value.encode("ascii", "replace")[:width].ljust(width, b" ")


def ibm_double(values: np.ndarray) -> np.ndarray:
    """IEEE 754 doubles as IBM System/370 doubles (big-endian uint64), NaN as the missing value.
    IEEE: 1.m x 2^(e-1023); IBM: 0.f x 16^(E-64). The 53-bit IEEE significand shifted left by
    k = (e - 1019) mod 4 bits is the 56-bit IBM fraction, and E = (e - 1019 - k) / 4 + 64. Values
    too small for IBM (|x| < 16^-65) are written 0; the SDTM values are far inside the range."""
    values = np.asarray(values, dtype=np.float64)
    bits = values.view(np.uint64)
    sign = bits & np.uint64(0x8000000000000000)
    exponent = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    mantissa = (bits & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x0010000000000000)
    shift = (exponent - 1019) % 4
    ibm_exponent = (exponent - 1019 - shift) // 4 + 64
    fraction = mantissa << shift.astype(np.uint64)
    result = sign | (np.clip(ibm_exponent, 0, 127).astype(np.uint64) << np.uint64(56)) | fraction
    zero = (values == 0) | (ibm_exponent < 0)
    result[zero] = np.uint64(0)
    nan = np.isnan(values)
    result[nan] = np.uint64(int.from_bytes(MISSING, "big"))
    return result.astype(">u8")


def blank_padded(texts: np.ndarray, length: int) -> np.ndarray:
    """Fixed-width bytes (NUL-padded, as numpy keeps them) as `S<length>` padded with blanks, as SAS
    wants them; a value holds no NUL."""
    cells = np.ascontiguousarray(texts, dtype=f"S{length}")
    if not len(cells):
        return cells
    grid = cells.view(np.uint8).reshape(len(cells), length)
    return np.where(grid == 0, np.uint8(32), grid).view(f"S{length}").reshape(len(cells))


class XptWriter:
    """One dataset as an XPT v5 file: `XptWriter(out, name, label, variables)` writes the headers,
    `write_rows(columns)` a chunk of observations, `close()` the padding.

    `variables`: (name ≤ 8, label ≤ 40, "char" | "num", length) in order."""

    def __init__(self, out: BinaryIO, name: str, label: str, variables: list[tuple[str, str, str, int]],
                 created: datetime | None = None) -> None:
        self.out = out
        self.variables = variables
        self.written = 0
        stamp = sas_datetime(created or datetime.now())
        header = [
            LIBRARY_HEADER,
            f"{'SAS':8}{'SAS':8}{'SASLIB':8}{SAS_VERSION:8}{OS_NAME:8}{'':24}{stamp}",
            f"{stamp}{'':64}",
            MEMBER_HEADER,
            DESCRIPTOR_HEADER,
            f"{'SAS':8}{name.upper()[:8]:8}{'SASDATA':8}{SAS_VERSION:8}{OS_NAME:8}{'':24}{stamp}",
            f"{stamp}{'':16}{label[:40]:40}{'':8}",
            _namestr_header(len(variables)),
        ]
        for line in header:
            assert len(line) == RECORD, line
        self._write(b"".join(_text(line, RECORD) for line in header))
        namestrs = bytearray()
        position = 0
        dtype = []
        for number, (var_name, var_label, kind, length) in enumerate(variables, 1):
            namestrs += struct.pack(
                ">hhhh8s40s8shhh2s8shhl52s", CHAR if kind == "char" else NUM, 0, length, number,
                _text(var_name.upper(), 8), _text(var_label, 40), _text("", 8), 0, 0, 0 if kind == "num" else 0,
                b"\0\0", _text("", 8), 0, 0, position, b"\0" * 52,
            )
            dtype.append((var_name, f"S{length}" if kind == "char" else ">u8"))
            position += length
        self.row_length = position
        self.dtype = np.dtype(dtype)
        self._write(bytes(namestrs) + self._padding(len(namestrs), b" "))
        self._write(_text(OBS_HEADER, RECORD))
        self.data_bytes = 0

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.written += len(data)

    @staticmethod
    def _padding(size: int, fill: bytes) -> bytes:
        return fill * (-size % RECORD)

    def write_rows(self, columns: dict[str, np.ndarray], padded: bool = False) -> None:
        """A chunk of observations: per variable, an array of fixed-width ASCII bytes (`S<length>`,
        blank-padded here unless `padded` says they are) or of floats (NaN: missing), all of one length."""
        rows = len(next(iter(columns.values()))) if columns else 0
        if not rows:
            return
        records = np.empty(rows, dtype=self.dtype)
        for var_name, _label, kind, length in self.variables:
            column = columns[var_name]
            if kind == "num":
                records[var_name] = ibm_double(column)
            else:  # numpy pads fixed-width bytes with NUL: SAS wants blanks
                records[var_name] = column if padded else blank_padded(column, length)
        data = records.view(np.uint8)
        self.data_bytes += len(data)
        self._write(data.data)

    def close(self) -> None:
        self._write(self._padding(self.data_bytes, b" "))
