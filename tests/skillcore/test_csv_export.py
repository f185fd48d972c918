"""skillcore.csv_export: a text cell a spreadsheet would run as a formula is written with a
leading quote; numbers stay numbers; the admin's re-check leaves our own files unchanged."""
from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from skillcore.csv_export import FORMULA_START, csv_text, neutralized_csv, safe_cell

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
starts = st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "", " ", "\n"]).flatmap(lambda p: text.map(lambda t: p + t))
numbers = st.one_of(st.integers(-10**9, 10**9), st.decimals(allow_nan=False, allow_infinity=False, places=2),
                    st.floats(allow_nan=False, allow_infinity=False))
cells = st.one_of(st.none(), text, starts, numbers)


def parse(data: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data, newline="")))


def test_the_owasp_list_and_the_numbers_decision():
    assert [safe_cell(v) for v in ['=HYPERLINK("http://x.invalid","x")', "+1", "-2", "@x", "\tx", "\rx"]] == [
        '\'=HYPERLINK("http://x.invalid","x")', "'+1", "'-2", "'@x", "'\tx", "'\rx"]
    # A number we write as a number is a figure, not a formula; the same characters as text are neutralized.
    assert [safe_cell(v) for v in (-3, Decimal("-0.5"), -1.25, None, True)] == [-3, Decimal("-0.5"), -1.25, "", "True"]
    assert safe_cell("Ana") == "Ana" and safe_cell(" =x") == " =x"


def test_a_carriage_return_inside_a_cell_cannot_start_a_new_row():
    written = csv_text(["name"], [["Ana\r=cmd|' /C calc'!A0"], ["x\ny"]])
    assert parse(written) == [["name"], ["Ana\r=cmd|' /C calc'!A0"], ["x\ny"]]


@given(header=st.lists(text, min_size=1, max_size=4), rows=st.lists(st.lists(cells, min_size=1, max_size=6), max_size=6))
def test_no_text_cell_starts_like_a_formula_and_every_value_survives(header, rows):
    written = csv_text(header, rows)
    parsed = parse(written)
    assert len(parsed) == 1 + len(rows)
    for values, got in zip([header, *rows], parsed):
        assert len(got) == len(values)
        for value, cell in zip(values, got):
            if isinstance(value, (int, float, Decimal)):
                assert cell == str(value)  # numbers as they are
            else:
                original = "" if value is None else value
                assert not cell.startswith(FORMULA_START)
                assert cell == original or cell == "'" + original
    assert neutralized_csv(written) == written  # the admin's re-check changes nothing of ours


@given(rows=st.lists(st.lists(st.one_of(text, starts), min_size=1, max_size=5), min_size=1, max_size=5))
def test_the_recheck_neutralizes_anything_stored_before(rows):
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)  # a writer without the cell rule
    for row in parse(neutralized_csv(out.getvalue())):
        for cell in row:
            # left as is only when it is a bare number ("-3", "-0.5", "-1e5"): a figure, never a formula
            assert not cell.startswith(FORMULA_START) or re.fullmatch(r"-(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", cell)
