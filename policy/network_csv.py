"""CSV files of the network lists: read them for an import, write them for an export.

The columns are the API's fields, so an exported file imports again and matches what
`POST /api/v1/…/bulk/` takes. Rows are parsed by the API's serializers and then checked by
`services.import_networks`, exactly like a bulk API request.
"""

import csv
import io
from dataclasses import dataclass

from policy.api.serializers import DeniedNetworkSerializer, TrustedNetworkSerializer, parse_rows
from policy.models import DeniedNetwork, TrustedNetwork
from policy.spreadsheet import SafeWriter, unescape_cell


class CsvError(ValueError):
    """The file as a whole cannot be read; the message says how to fix it."""


@dataclass(frozen=True)
class NetworkList:
    name: str
    title: str
    model: type[TrustedNetwork] | type[DeniedNetwork]
    serializer: type

    @property
    def columns(self) -> list[str]:
        return [name for name, field in self.serializer().fields.items() if not field.read_only]


LISTS = {
    entry.name: entry
    for entry in (
        NetworkList("trusted", "Trusted networks", TrustedNetwork, TrustedNetworkSerializer),
        NetworkList("denied", "Denied networks (NEVER list)", DeniedNetwork, DeniedNetworkSerializer),
    )
}


@dataclass
class ParsedFile:
    rows: list  # parsed fields per data row, None where the row is bad
    errors: dict  # data row number (from 1) -> field -> messages
    lines: list[int]  # each data row's line in the file, for the messages

    def line(self, row: int) -> int:
        return self.lines[row - 1]


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # spreadsheets put a byte order mark in front
    except UnicodeDecodeError:
        raise CsvError("The file is not UTF-8 text. In your spreadsheet, save it as “CSV UTF-8”.") from None


def read(text: str, network_list: NetworkList, max_rows: int | None = None) -> ParsedFile:
    """Parse CSV text: a first line naming the columns, then one network per line.

    More than max_rows data rows is a CsvError, raised before any row is checked.
    """
    reader = csv.DictReader(io.StringIO(text))
    columns = network_list.columns
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if not header:
        raise CsvError(f"The file is empty. Its first line names the columns: {', '.join(columns)}.")
    for name in header:
        if name not in columns:
            raise CsvError(f"Unknown column “{name}” in the first line; the columns are {', '.join(columns)}.")
    if "network" not in header:
        raise CsvError("The first line must name the columns, including “network”; see an exported file.")
    if len(set(header)) != len(header):
        raise CsvError("A column is named twice in the first line; name each column once.")
    reader.fieldnames = header
    records, lines, shape_errors = [], [], {}
    for number, record in enumerate(reader, 1):
        if max_rows is not None and number > max_rows:
            raise CsvError(
                f"The file has more than {max_rows:,} networks; import at most that many at a time "
                "(RELAYADMIN_BULK_MAX_ROWS): split it, or use manage.py import_networks."
            )
        lines.append(reader.line_num)
        if record.pop(None, None):  # DictReader files surplus cells under None
            shape_errors[number] = {"line": ["This line has more cells than the first line has columns."]}
        # An empty cell means "the default", as a field left out of an API request does.
        # A leading quote that the export put before a formula-like cell is taken off again.
        cells = {name: value.strip() for name, value in record.items() if value and value.strip()}
        records.append({name: unescape_cell(value) for name, value in cells.items()})
    rows, errors = parse_rows(network_list.serializer, records)
    for number, error in shape_errors.items():
        rows[number - 1] = None
        errors[number] = error
    return ParsedFile(rows, errors, lines)


def write(network_list: NetworkList, out) -> None:
    """Write the list as CSV in the form `read` takes back, formula-like cells escaped."""
    columns = network_list.columns
    serializer = network_list.serializer()
    writer = SafeWriter(out)
    writer.writerow(columns)
    for obj in network_list.model.objects.iterator(chunk_size=2000):
        data = serializer.to_representation(obj)
        writer.writerow([_cell(data[name]) for name in columns])


def _cell(value) -> str:
    """Return a field's CSV cell: empty for none, a list (sender domains) as names split by spaces."""
    if value is None:
        return ""
    return " ".join(value) if isinstance(value, list) else value
