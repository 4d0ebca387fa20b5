"""Writing many rows at once: registration's datasets and attributes.

One prepared INSERT run over the whole batch (COPY on PostgreSQL) rather than
``bulk_create``, whose per-value preparation cost more than all the rest; the values the
models fill in themselves (defaults, timestamps) are prepared once per batch. Like
``bulk_create``, this calls no ``save()`` and sends no signals. The column list is the
model's own fields, so it is built from the model rather than written out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models

from crunch.db.rows import connection_for

PLAIN = (str, int, float, bool, type(None))
"""Python values every database driver takes as they are."""


def insert_rows(
    model: type[models.Model], common: dict[str, Any], varying: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:  # fmt: skip
    """INSERT rows of ``model``: ``varying`` fields from each row, the others as a new
    instance made with ``common`` has them (defaults, timestamps), prepared once."""
    connection = connection_for(model)
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    named = {f.name: f for f in fields}
    each = [named[name] for name in varying]
    fixed = [f for f in fields if f.name not in varying]
    prototype = model(**common)
    constant = tuple(f.get_db_prep_save(f.pre_save(prototype, True), connection) for f in fixed)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(f.column)) for f in [*each, *fixed])
    marks = ", ".join(["%s"] * (len(each) + len(fixed)))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks})"

    def prepare(field: models.Field[Any, Any], value: Any) -> Any:
        return value if type(value) in PLAIN else field.get_db_prep_save(value, connection)

    prepared = [(*map(prepare, each, row), *constant) for row in rows]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and hasattr(cursor.cursor, "copy"):  # psycopg 3
            # Half the time of executemany's pipeline for a batch of 1,000.
            copying = cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN")
            with connection.wrap_database_errors, copying as copy:  # IntegrityError, as Django's
                for row in prepared:
                    copy.write_row(row)
        else:
            cursor.executemany(sql, prepared)


def parameter_limit(model: type[models.Model]) -> int:
    """Values one statement on ``model``'s database may bind: SQLite says (999 on old
    builds, 32766 or more); PostgreSQL takes 65535."""
    connection = connection_for(model)
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        getlimit = getattr(connection.connection, "getlimit", None)
        if getlimit is None:  # Python before 3.11
            return 999
        import sqlite3

        return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)) - 10
    return 30_000
