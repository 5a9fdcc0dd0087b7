"""Insert or update thousands of model rows in a few statements, with little work per value.

Django's bulk_create resolves expressions, calls pre_save() and builds a placeholder for every
value of every row, and on PostgreSQL psycopg then quotes each value into the statement's text;
bulk_update builds a CASE expression per field that grows with every row. For a 10,000-row
import that bookkeeping costs more than the database's own work. The objects given here are
final (the caller has set every field, timestamps included).

On PostgreSQL every row travels in one JSON document, which orjson writes and the server takes
apart, both in C: a tenth of the client's time of one array per column. The values go as the
fields hold them (text, numbers, booleans, aware datetimes, JSON data); anything else makes
orjson raise. On SQLite, in process, each value is converted once by its field.
"""

import orjson
from django.db import connection, connections


def insert(model, objs: list) -> None:
    """INSERT the objects and give each its new primary key, in list order (the audit chain relies on it)."""
    if not objs:
        return
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    # Every statement here is built from the model's table and column names, never from input.
    head = f"INSERT INTO {_name(model._meta.db_table)} ({_names(fields)})"
    returning = f"RETURNING {_name(model._meta.pk.column)}"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # ORDER BY the position in the document: ids follow the list.
            rows = f"{_recordset(fields)} WITH ORDINALITY AS r ({_names(fields)}, _position) ORDER BY _position"
            statement = f"{head} SELECT {_names(fields)} FROM {rows} {returning}"  # noqa: S608 (names, not input)
            cursor.execute(statement, [_document(objs, fields)])
            pks = cursor.fetchall()
        else:
            row = f"({', '.join(['%s'] * len(fields))})"
            batch = connection.ops.bulk_batch_size(fields, objs)  # within SQLite's 999 parameters
            pks = []
            for start in range(0, len(objs), batch):
                chunk = objs[start : start + batch]
                values = [value for row_values in _rows(chunk, fields) for value in row_values]
                cursor.execute(f"{head} VALUES {', '.join([row] * len(chunk))} {returning}", values)
                pks += cursor.fetchall()
    for obj, (pk,) in zip(objs, pks, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias


def update(model, objs: list, names: list[str]) -> None:
    """UPDATE these fields of the saved objects to the values they hold."""
    if not objs:
        return
    fields = [model._meta.get_field(name) for name in names]
    pk = model._meta.pk
    table = _name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            assignments = ", ".join(f"{_name(field.column)} = r.{_name(field.column)}" for field in fields)
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM {_recordset([pk, *fields])} AS r"  # noqa: S608 (names)
                f" WHERE {table}.{_name(pk.column)} = r.{_name(pk.column)}",
                [_document(objs, [pk, *fields])],
            )
        else:
            assignments = ", ".join(f"{_name(field.column)} = %s" for field in fields)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {_name(pk.column)} = %s",  # noqa: S608 (names, not input)
                _rows(objs, [*fields, pk]),
            )


def _name(name: str) -> str:
    return connection.ops.quote_name(name)


def _names(fields) -> str:
    return ", ".join(_name(field.column) for field in fields)


def _recordset(fields) -> str:
    """Return PostgreSQL's set of rows of a JSON document parameter, one typed column per field."""
    types = ", ".join(f"{_name(field.column)} {field.db_type(connection)}" for field in fields)
    return f"ROWS FROM (jsonb_to_recordset(%s::jsonb) AS ({types}))"


def _document(objs, fields) -> str:
    return orjson.dumps([{field.column: getattr(obj, field.attname) for field in fields} for obj in objs]).decode()


def _rows(objs, fields) -> list[list]:
    """Return the objects' values for SQLite, a list per object, each value converted by its field."""
    # The wrapper itself: each attribute read through the thread-local `connection` proxy costs
    # more than most conversions, and a 10,000-row import makes hundreds of thousands of them.
    wrapper = connections[connection.alias]
    return [[field.get_db_prep_save(getattr(obj, field.attname), wrapper) for field in fields] for obj in objs]
