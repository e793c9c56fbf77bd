"""Text that a spreadsheet must show, never run (formula or "CSV" injection, CWE-1236).

Excel, LibreOffice Calc and Google Sheets read a cell that begins with `=`, `+`, `-` or `@` as a
formula, and a leading tab or carriage return does not stop them. OWASP's "CSV Injection" page
and ASVS 5.0 requirement 1.2.10 give the rule followed here: a text value whose first character
is `=` `+` `-` `@` tab (0x09), carriage return (0x0D) or NUL (0x00) is written with a single
quote in front of it, which spreadsheets take as "this cell is text". The usual CSV quoting of
separators, quotes and line breaks (RFC 4180) is the csv module's.

Numbers stay numbers: a value that is a plain negative decimal number (`-2`, `-0.5`) is left as
it is, since a spreadsheet reads it as that number and it cannot run anything; a value with
anything after the number (`-2+3`, `-1+cmd|' /C calc'!A0`) is guarded. Writers apply this only
to text: numeric columns are written as numbers. It is a spreadsheet rule, so only the CSV and
Excel exports and the audit-trail CSV use it; ODM, SAS transport, SPSS and Stata files keep
every value exactly as entered.
"""

from __future__ import annotations

import re

# The characters OWASP lists (= + - @ tab CR), and NUL from ASVS 5.0 (V1.2.10).
FORMULA_TRIGGERS = frozenset("=+-@\t\r\0")
QUOTE = "'"
_PLAIN_NEGATIVE_NUMBER = re.compile(r"-[0-9]+(\.[0-9]+)?")

# The same rule as one PostgreSQL regular expression, for exports the database formats itself
# (`regexp_replace(value, SQL_FORMULA_START, SQL_GUARDED)` puts a quote before the match): the first
# character if it is a trigger, a minus sign only when what follows is not just a decimal number.
SQL_FORMULA_START = "^([=+@\t\r]|-(?![0-9]+([.][0-9]+)?$))"
SQL_GUARDED = QUOTE + "\\&"


def runs_as_formula(value: str) -> bool:
    """Whether a spreadsheet could read this text as a formula."""
    return bool(value) and value[0] in FORMULA_TRIGGERS and _PLAIN_NEGATIVE_NUMBER.fullmatch(value) is None


def text_cell(value: str) -> str:
    """The text as a spreadsheet-safe cell: a leading single quote when it could run as a formula."""
    return QUOTE + value if runs_as_formula(value) else value
