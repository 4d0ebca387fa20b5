"""``crunch export``: a project's results as CSV, JSON Lines or Parquet, streamed.

CSV and JSON Lines are the server's bytes, written as they arrive: the file is the one
the API serves, byte for byte. Parquet is written here from the JSON Lines stream, in
record batches typed by the ``Crunch-Result-Kinds`` header, with the server's column
layout and types (``crunch.services.result_export``). Memory stays flat: a chunk of bytes,
or a batch of rows, at a time.

With a destination, the bytes go to a partial file beside it that is renamed over it
once complete: an export that breaks or is interrupted leaves no half file behind.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from crunchclient.exceptions import ConfigurationError
from crunchclient.server.connection import Connection
from crunchclient.server.results import ResultStream, typed_value

FORMATS = ("csv", "jsonl", "parquet")
BATCH = 10_000  # rows per Parquet record batch, as the server's
PARQUET_TYPES = {
    "int": "int64", "float": "float64", "bool": "bool_", "char": "string", "date": "date32",
}  # fmt: skip
"""{result kind: the pyarrow type's factory}; datetime is timestamp[us, UTC]."""


def pyarrow_modules() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, imported on first use: they are an extra."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigurationError(
            "Parquet needs pyarrow: pip install 'django-crunch[parquet]' "
            "(or export --format csv or jsonl)."
        ) from None
    return pyarrow, pyarrow.parquet


@contextmanager
def partial(dest: Path) -> Iterator[IO[bytes]]:
    """A file beside ``dest`` to write, renamed to ``dest`` if the block ends normally and
    deleted if it does not (an error, Ctrl-C)."""
    if dest.is_dir():
        raise ConfigurationError(f"--dest {str(dest)!r} is a directory: name a file.")
    if not dest.parent.is_dir():
        raise ConfigurationError(
            f"--dest {str(dest)!r}: the directory {str(dest.parent)!r} does not exist."
        )
    path = dest.with_name(f"{dest.name}.{secrets.token_hex(4)}.partial")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise ConfigurationError(f"--dest {str(dest)!r} cannot be written ({exc}).") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(path, dest)
    except BaseException:
        with suppress(FileNotFoundError):
            path.unlink()
        raise


def copy(stream: ResultStream, out: IO[bytes]) -> None:
    """Write the stream's bytes to ``out`` as they arrive."""
    for chunk in stream.chunks():
        out.write(chunk)


def arrow_schema(pa: Any, kinds: dict[str, str]) -> Any:
    """The Parquet schema: dataset, state, then each column (a lat-long as _lat, _lon)."""
    fields = [pa.field("dataset", pa.string()), pa.field("state", pa.string())]
    for name, kind in kinds.items():
        if kind == "latlong":
            fields += [pa.field(f"{name}_lat", pa.float64()), pa.field(f"{name}_lon", pa.float64())]
        elif kind == "datetime":
            fields.append(pa.field(name, pa.timestamp("us", tz="UTC")))
        else:
            fields.append(pa.field(name, getattr(pa, PARQUET_TYPES[kind])()))
    return pa.schema(fields)


def arrow_batch(pa: Any, schema: Any, records: list[dict[str, Any]], kinds: dict[str, str]) -> Any:
    columns: list[list[Any]] = [[r["dataset"] for r in records], [r["state"] for r in records]]
    for name, kind in kinds.items():
        values = [typed_value(kind, record.get(name)) for record in records]
        if kind == "latlong":
            columns.append([value.lat if value else None for value in values])
            columns.append([value.lon if value else None for value in values])
        else:
            columns.append(values)
    arrays = [
        pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def write_parquet(stream: ResultStream, out: IO[bytes]) -> int:
    """Write the JSON Lines stream to ``out`` as Parquet, batch by batch; return the rows."""
    pa, pq = pyarrow_modules()
    kinds = stream.kinds
    schema = arrow_schema(pa, kinds)
    written = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[dict[str, Any]] = []
        for line in stream.lines():
            batch.append(json.loads(line))
            if len(batch) == BATCH:
                writer.write_batch(arrow_batch(pa, schema, batch, kinds))
                written, batch = written + len(batch), []
        if batch or not written:
            writer.write_batch(arrow_batch(pa, schema, batch, kinds))
            written += len(batch)
    return written


def export(
    connection: Connection, project: str, *, format: str, out: IO[bytes] | None = None,
    dest: Path | None = None, where: Sequence[str] = (), columns: str | None = None,
    sort: str | None = None,
) -> None:  # fmt: skip
    """Export the project's results to ``dest`` (through a partial file) or to ``out``.
    The server checks the filters before it sends any byte."""
    if format == "parquet":
        pyarrow_modules()  # missing: say so before asking the server for anything
    stream = connection.results(
        project, format="jsonl" if format == "parquet" else format, where=where,
        columns=columns, sort=sort,
    )  # fmt: skip
    try:
        if dest is None:
            assert out is not None, "export() needs out or dest"
            write(stream, format, out)
        else:
            with partial(dest) as file:
                write(stream, format, file)
    finally:
        stream.response.close()


def write(stream: ResultStream, format: str, out: IO[bytes]) -> None:
    if format == "parquet":
        write_parquet(stream, out)
    else:
        copy(stream, out)
    out.flush()
