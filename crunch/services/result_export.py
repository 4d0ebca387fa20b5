"""A project's results as CSV, JSON Lines or Parquet, written as the rows stream by.

The formats, byte for byte (docs/how-it-works/results.md shows an example):

- columns: ``dataset`` (the slug), ``state``, then the result keys chosen (all, by name,
  unless the request names them); a lat-long key ``where`` is two CSV and Parquet
  columns ``where_lat`` and ``where_lon``, and an object ``{"lat": .., "lon": ..}`` in JSON;
- CSV: UTF-8 without a BOM, ``\\n`` line ends, fields quoted only when they must be; a
  missing result is an empty field; booleans ``true``/``false``; floats as Python's
  shortest round-trip ``repr`` (``0.1``, ``1e-05``); dates ``2024-05-01`` and times in UTC
  as ``2024-05-01T12:00:00Z``;
- JSON Lines: one compact object per dataset (``{"dataset":..,"state":..,"score":..}``),
  keys in column order, a missing result ``null``, non-ASCII text as is, ``\\n`` after each;
- Parquet (the ``parquet`` extra, pyarrow): int64, float64, bool, string, date32 and
  timestamp[us, UTC] columns, written in record batches of 10,000 rows.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from crunch.choices import AttributeKind
from crunch.exceptions import CrunchError
from crunch.models import LatLon, ResultKey
from crunch.services.results import ResultRow, Table

FLUSH = 64 * 1024  # bytes gathered before a chunk is handed on
BATCH = 10_000  # rows per Parquet record batch
FORMATS = ("csv", "jsonl", "parquet")


class MissingExtra(CrunchError):
    """Parquet needs pyarrow: pip install 'django-crunch[parquet]'."""


def header(columns: Iterable[ResultKey]) -> list[str]:
    """The CSV and Parquet column names."""
    names = ["dataset", "state"]
    for key in columns:
        if key.kind == AttributeKind.LATLONG:
            names += [f"{key.name}_lat", f"{key.name}_lon"]
        else:
            names.append(key.name)
    return names


def text(value: Any) -> Any:
    """A value as JSON and CSV write it: dates ISO, times in UTC with a Z."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(text(value))


def chunked(lines: Iterator[str]) -> Iterator[bytes]:
    """``lines`` encoded in UTF-8, gathered into chunks of about FLUSH bytes."""
    buffer: list[str] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= FLUSH:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()


def csv_formatter(kind: str) -> Callable[[Any], str]:
    """``csv_field`` for one kind, without its type tests: a column holds one kind."""
    if kind == AttributeKind.FLOAT:
        return repr
    if kind in (AttributeKind.INTEGER, AttributeKind.TEXT):
        return str
    if kind == AttributeKind.BOOLEAN:
        return lambda value: "true" if value else "false"
    return csv_field


def csv_lines(table: Table) -> Iterator[str]:
    """The CSV in pieces of about FLUSH characters: a row's cells are made by its columns'
    formatters and written into one buffer (a million cells in a few seconds)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header(table.columns))
    columns = [(key.name, key.kind == AttributeKind.LATLONG, csv_formatter(key.kind))
               for key in table.columns]  # fmt: skip
    for row in table.rows():
        cells = [row.dataset, row.state]
        values = row.values
        for name, pair, formatted in columns:
            value = values.get(name)
            if pair:
                cells += (repr(value.lat), repr(value.lon)) if value else ("", "")
            else:
                cells.append("" if value is None else formatted(value))
        writer.writerow(cells)
        if out.tell() >= FLUSH:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def json_value(value: Any) -> Any:
    if isinstance(value, LatLon):
        return {"lat": value.lat, "lon": value.lon}
    return text(value)


def jsonl_lines(table: Table) -> Iterator[str]:
    names = [key.name for key in table.columns]
    for row in table.rows():
        record = {"dataset": row.dataset, "state": row.state}
        record.update((name, json_value(row.values.get(name))) for name in names)
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def csv_chunks(table: Table) -> Iterator[bytes]:
    """The table as CSV, in chunks of bytes."""
    return chunked(csv_lines(table))


def jsonl_chunks(table: Table) -> Iterator[bytes]:
    """The table as JSON Lines, in chunks of bytes."""
    return chunked(jsonl_lines(table))


STREAMS: dict[str, Callable[[Table], Iterator[bytes]]] = {
    "csv": csv_chunks,
    "jsonl": jsonl_chunks,
}
"""The formats the API streams, by name."""


def pyarrow_modules() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, imported on first use: they are an extra."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise MissingExtra() from exc
    return pyarrow, pyarrow.parquet


def arrow_schema(pa: Any, columns: list[ResultKey]) -> Any:
    types = {
        "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "char": pa.string(),
        "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC"),
    }  # fmt: skip
    fields = [pa.field("dataset", pa.string()), pa.field("state", pa.string())]
    for key in columns:
        if key.kind == AttributeKind.LATLONG:
            fields += [pa.field(f"{key.name}_lat", pa.float64()),
                       pa.field(f"{key.name}_lon", pa.float64())]  # fmt: skip
        else:
            fields.append(pa.field(key.name, types[key.kind]))
    return pa.schema(fields)


def parquet_columns(rows: list[ResultRow], columns: list[ResultKey]) -> list[list[Any]]:
    """The batch's values, column by column in ``header`` order."""
    out: list[list[Any]] = [[row.dataset for row in rows], [row.state for row in rows]]
    for key in columns:
        values = [row.values.get(key.name) for row in rows]
        if key.kind == AttributeKind.LATLONG:
            out.append([value.lat if value else None for value in values])
            out.append([value.lon if value else None for value in values])
        else:
            out.append(values)
    return out


def write_parquet(table: Table, file: str | IO[bytes]) -> int:
    """Write the table to ``file`` as Parquet in record batches; return the rows written."""
    pa, pq = pyarrow_modules()
    schema = arrow_schema(pa, table.columns)
    written = 0
    with pq.ParquetWriter(file, schema) as writer:
        batch: list[ResultRow] = []
        for row in table.rows():
            batch.append(row)
            if len(batch) == BATCH:
                writer.write_batch(arrow_batch(pa, schema, batch, table.columns))
                written, batch = written + len(batch), []
        if batch or not written:
            writer.write_batch(arrow_batch(pa, schema, batch, table.columns))
            written += len(batch)
    return written


def arrow_batch(pa: Any, schema: Any, rows: list[ResultRow], columns: list[ResultKey]) -> Any:
    arrays = [
        pa.array(values, type=field.type)
        for values, field in zip(parquet_columns(rows, columns), schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
