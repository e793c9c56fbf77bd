"""The streaming SAS transport (v5) writer (trials.exports.xpt): numbers in IBM floating point as
published, and every dataset of each seed trial's SDTM package reads back with pyreadstat exactly
as the file the previous writer (a DataFrame through pyreadstat.write_xport) gives."""

from __future__ import annotations

import io
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from tests.exports.test_odm import SEED_SITES, _trial_data, export_bytes, spec_for, trial_data  # noqa: F401 - fixtures
from trials.exports import sdtm, xpt


def test_ibm_double_precision_as_published():
    """IBM System/370 hexadecimal floating point: -118.625 is C2 76 A0 00 … (the worked example
    of IBM's "Enterprise Systems Architecture/390 Principles of Operation", chapter 9, and of the
    Wikipedia article "IBM hexadecimal floating-point"); 1 is 41 10 00 …, 0.5 is 40 80 00 …;
    zero is all zeros; a SAS missing value is 2E 00 … (TS-140)."""
    values = np.array([-118.625, 1.0, 0.5, 0.0, math.nan, 100.0])
    words = [bytes(w) for w in xpt.ibm_double(values).view("S8")]
    expected = [
        bytes.fromhex("C276A00000000000"), bytes.fromhex("4110000000000000"), bytes.fromhex("4080000000000000"),
        bytes(8), bytes.fromhex("2E00000000000000"), bytes.fromhex("4264000000000000"),
    ]
    assert [w.ljust(8, b"\0") for w in words] == expected


def _read(path: Path) -> tuple[pd.DataFrame, object]:
    return pyreadstat.read_xport(str(path))


def _same(streamed: Path, reference: Path) -> None:
    data, meta = _read(streamed)
    ref_data, ref_meta = _read(reference)
    pd.testing.assert_frame_equal(data, ref_data, check_dtype=False)
    assert meta.column_names == ref_meta.column_names
    assert meta.column_labels == ref_meta.column_labels
    assert (meta.table_name, meta.file_label) == (ref_meta.table_name, ref_meta.file_label)
    assert meta.variable_storage_width == ref_meta.variable_storage_width
    assert meta.number_rows == ref_meta.number_rows == len(data)


def test_chunks_sorting_missing_values_and_padding(tmp_path):
    """Rows added out of order come out sorted by the keys whatever the chunk size; missing
    numbers and texts, a 200-character text and numbers of every magnitude survive."""
    dataset = sdtm.Dataset("XX", "Test dataset", [
        sdtm.Var("USUBJID", "Unique Subject Identifier"), sdtm.Var("XXSEQ", "Sequence Number", sdtm.NUM),
        sdtm.Var("XXORRES", "Result"), sdtm.Var("XXSTRESN", "Numeric Result", sdtm.NUM),
    ], keys=("USUBJID", "XXSEQ"))
    numbers = [0.1, -2.5, 1e-10, 123456789.125, None, 3.0, 1e30, -0.0]
    for row in range(45):
        dataset.add(USUBJID=f"S-{(row * 7) % 11:03d}" if row % 13 else "", XXSEQ=float(45 - row),
                    XXORRES=("x" * 200) if row == 3 else ("" if row % 5 == 0 else f"value {row}"),
                    XXSTRESN=numbers[row % len(numbers)])
    reference = tmp_path / "reference.xpt"
    sdtm.write_xpt_frame(dataset, reference)
    for chunk in (7, 45, 1000):
        streamed = tmp_path / f"streamed{chunk}.xpt"
        with streamed.open("wb") as out:
            dataset.write_xpt(out, chunk=chunk)
        _same(streamed, reference)
        data, _meta = _read(streamed)
        assert list(data["USUBJID"]) == sorted(data["USUBJID"])


@pytest.mark.django_db
@pytest.mark.usefixtures("trial_data")
@pytest.mark.parametrize("trial_code", sorted(SEED_SITES))
def test_each_seed_package_reads_back_as_the_previous_writer_wrote_it(trial_code, tmp_path, monkeypatch):
    streamed = export_bytes(sdtm, spec_for("datamanager", trial_code))[0]
    monkeypatch.setattr(sdtm, "write_xpt", sdtm.write_xpt_frame)
    reference = export_bytes(sdtm, spec_for("datamanager", trial_code))[0]
    with zipfile.ZipFile(io.BytesIO(streamed)) as new, zipfile.ZipFile(io.BytesIO(reference)) as old:
        names = sorted(n for n in new.namelist() if n.endswith(".xpt"))
        assert names == sorted(n for n in old.namelist() if n.endswith(".xpt"))
        assert len(names) > 10
        for name in names:
            (tmp_path / "new.xpt").write_bytes(new.read(name))
            (tmp_path / "old.xpt").write_bytes(old.read(name))
            _same(tmp_path / "new.xpt", tmp_path / "old.xpt")


STAMP = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")  # the headers' creation time


@pytest.mark.django_db
@pytest.mark.usefixtures("trial_data")
def test_findings_spilled_in_small_chunks_and_batches_give_the_same_files(monkeypatch):
    """The findings are read a batch of subjects at a time in USUBJID order and spilled a chunk of
    rows at a time (sdtm.SpilledDataset): with batches of 2 subjects and chunks of 7 rows (many
    flushes, a chunk ending at any subject) every .xpt file and define.xml is the same, byte for
    byte but the creation times, as with the default sizes."""
    spec = spec_for("datamanager", "ASC-DU")
    reference = export_bytes(sdtm, spec)[0]
    monkeypatch.setattr(sdtm, "XPT_CHUNK", 7)
    monkeypatch.setattr(sdtm.Findings, "BATCH", 2)
    small = export_bytes(sdtm, spec)[0]
    with zipfile.ZipFile(io.BytesIO(small)) as new, zipfile.ZipFile(io.BytesIO(reference)) as old:
        names = [n for n in old.namelist() if n.endswith(".xpt")]
        assert names == [n for n in new.namelist() if n.endswith(".xpt")]
        assert any(n.startswith(("qs", "fa", "vs", "lb")) for n in names)
        for name in names:
            assert STAMP.sub(b"", new.read(name)) == STAMP.sub(b"", old.read(name)), name
        stamp = re.compile(rb'(FileOID|CreationDateTime)="[^"]*"')
        assert stamp.sub(b"", new.read("define.xml")) == stamp.sub(b"", old.read("define.xml"))
