"""CSV cells that a spreadsheet shows as text and never runs as a formula.

OWASP's advice against CSV injection: a cell that starts with = + - @, a tab or a carriage
return gets a leading single quote, which spreadsheets take as "this is text". A cell that
already starts with a quote before one of those (or before another quote) gets one more, so
that `unescape_cell` gives back exactly what was written and an exported file imports again
unchanged.
"""

import csv

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTED_STARTS = (*FORMULA_STARTS, "'")


def escape_cell(value):
    """Return value with a leading quote if a spreadsheet could read it as a formula; other types pass through."""
    if isinstance(value, str) and (
        value.startswith(FORMULA_STARTS) or (value.startswith("'") and value[1:].startswith(_QUOTED_STARTS))
    ):
        return "'" + value
    return value


def unescape_cell(text: str) -> str:
    """Return the value that escape_cell turned into this cell's text."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_QUOTED_STARTS) else text


class SafeWriter:
    """A csv.writer whose cells are escaped with escape_cell."""

    def __init__(self, out):
        self._writer = csv.writer(out)

    def writerow(self, row) -> None:
        self._writer.writerow([escape_cell(value) for value in row])
