"""CSV files people open in a spreadsheet: every cell the product writes is safe to open.

A spreadsheet (Excel, LibreOffice, Google Sheets) reads a cell whose text starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula: a student named
``=HYPERLINK("http://x.invalid","x")`` would open as a live link in a principal's export
(OWASP "CSV injection"). Such a text cell is written with a leading single quote, which
spreadsheets take as "this is text" and do not show.

What is a number and what is text: a value this code writes *as a number* (int, float,
Decimal) stays as it is, so a trend of -3 or -0.5 is still a figure the reader can sum; a
bare number is never a formula. Every other value (names, codes, labels, dates) is text
and is neutralized, so a student named "-2" or "+1" is written ``'-2``, ``'+1``.

``csv_text`` is the only CSV writer (scheduling.reports.to_csv uses it for every report
and export); ``neutralized_csv`` re-checks stored CSV on its way out of the admin, for
files written before cells were neutralized.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# RFC 4180's CRLF between records. With "\n", Python's writer leaves a cell holding a bare
# "\r" unquoted and readers end the record there: "Ana\r=cmd" became a new row whose first
# cell is a formula. With "\r\n" every cell holding "\r" or "\n" is quoted.
LINE_END = "\r\n"
# Stored text has lost its types: a bare number ("-3", "-0.5", "1e-5") is still a
# number and no formula, so it is left as it is; anything else starting like a formula
# is text (a name) and is neutralized.
_BARE_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def safe_cell(value):
    """One cell as it must be written: None -> "", numbers unchanged, text neutralized."""
    if value is None:
        return ""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_text(header: Sequence, rows: Iterable[Sequence]) -> str:
    """CSV text with a header row; every cell (header included) through ``safe_cell``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=LINE_END)
    writer.writerow([safe_cell(v) for v in header])
    for r in rows:
        writer.writerow([safe_cell(v) for v in r])
    return out.getvalue()


def _stored_cell(text: str) -> str:
    return text if _BARE_NUMBER.fullmatch(text) else safe_cell(text)


def neutralized_csv(text: str) -> str:
    """Stored CSV text with every cell re-checked. Text ``csv_text`` wrote comes back
    byte for byte (a neutralized cell starts with a quote; a number matches the bare
    number form), so this only changes files written by older code (their cells, and
    their "\n" line ends)."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=LINE_END)
    for r in rows:
        writer.writerow([_stored_cell(v) for v in r])
    return out.getvalue()
