"""CSV cells never run as spreadsheet formulas, and escaping them round-trips (issue 11, finding 5)."""

import pytest

from policy.spreadsheet import escape_cell, unescape_cell

CASES = [
    ('=HYPERLINK("http://evil.example")', '\'=HYPERLINK("http://evil.example")'),
    ("+44 20 7946 0000", "'+44 20 7946 0000"),
    ("-- old router", "'-- old router"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\tcmd", "'\tcmd"),
    ("\rcmd", "'\rcmd"),
    ("'=already quoted", "''=already quoted"),  # so that the import takes exactly one quote off
    ("''", "'''"),
    ("'plain", "'plain"),  # a quote before harmless text means nothing to a spreadsheet
    ("'", "'"),
    ("", ""),
    ("LAN, main", "LAN, main"),
    ("a=b", "a=b"),
    ("2001:db8::/32", "2001:db8::/32"),
]


@pytest.mark.parametrize(("value", "cell"), CASES)
def test_formula_like_cells_get_a_quote_and_lose_it_again(value, cell):
    assert escape_cell(value) == cell
    assert unescape_cell(cell) == value


@pytest.mark.parametrize("value", [None, -5, True, 3.5])
def test_values_that_are_not_text_pass_through(value):
    assert escape_cell(value) is value
