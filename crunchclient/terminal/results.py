"""A project's results from the terminal and from Python, over HTTP.

``results(project, where=..., columns=..., sort=...)`` yields typed ``ResultRow``s, as the
server's ``crunch.services.results`` does without HTTP: the filters are checked at the call
(a ConfigurationError in the server's words), the rows then stream in as they are read.
``ls`` is ``crunch ls`` with result options: the dataset list filtered and sorted by the
server, with the result columns in the table.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from crunchclient.printable import markup
from crunchclient.server.connection import Connection
from crunchclient.server.results import ResultRow, ResultStream, typed_row
from crunchclient.terminal import remote


def results(
    project: str, *, where: str | Iterable[str] = (), columns: str | Sequence[str] | None = None,
    sort: str | None = None, url: str | None = None, token: str | None = None,
    connection: Connection | None = None,
) -> Iterator[ResultRow]:  # fmt: skip
    """Yield the project's datasets with their results, filtered and sorted, flat in memory.

    ``url`` and ``token`` default to CRUNCH_URL and CRUNCH_TOKEN (or give a
    ``connection``). The filters, columns and sort are checked at the call, before any row:
    ConfigurationError for one the server refuses, NotFound for a project the token may
    not see.
    """
    own = connection is None
    if connection is None:
        connection = remote.connect({"url": url, "token": token})
    wheres = [where] if isinstance(where, str) else list(where)
    try:
        stream = connection.results(
            project, format="jsonl", where=wheres, columns=columns, sort=sort
        )
    except BaseException:
        if own:
            connection.close()
        raise
    return rows_of(stream, connection if own else None)


def rows_of(stream: ResultStream, owned: Connection | None) -> Iterator[ResultRow]:
    kinds = stream.kinds
    try:
        for line in stream.lines():
            yield typed_row(json.loads(line), kinds)
    finally:
        stream.response.close()
        if owned is not None:
            owned.close()


def cell(value: Any) -> str:
    """A result as the table shows it: as in the CSV export; a lat-long as 'lat, lon'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return f"{cell(value.get('lat'))}, {cell(value.get('lon'))}"
    return str(value)


def numeric(values: Iterable[Any]) -> bool:
    """Whether a column holds numbers only (shown right-aligned)."""
    found = [value for value in values if value is not None]
    return bool(found) and all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in found
    )


def results_table(rows: list[dict[str, Any]], names: list[str], *, width: int | None = None) -> str:
    """Datasets with their results, as a rich table rendered to text."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("dataset", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for name in names:
        values = [(row.get("results") or {}).get(name) for row in rows]
        table.add_column(name, justify="right" if numeric(values) else "left", overflow="fold")
    for row in rows:
        found = row.get("results") or {}
        cells = [markup(cell(found.get(name))) for name in names]
        table.add_row(markup(row["slug"]), markup(row["state"]), *cells)
    console = Console(width=width or 160, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().rstrip("\n")


def ls(  # noqa: PLR0913 (keyword-only: the command's options)
    connection: Connection, project: str, *, where: Sequence[str] = (), sort: str | None = None,
    columns: str | None = None, state: str | None = None, search: str | None = None,
    as_json: bool = False, width: int | None = None,
) -> str:  # fmt: skip
    """``crunch ls`` with results: the server filters and sorts; the columns named, else
    every result the datasets listed have (by name), as the export's default."""
    connection.project(project)  # a clear error for a project the token cannot see
    rows = list(
        connection.datasets(
            project=project, state=state, search=search, where=list(where), sort=sort,
            columns=columns,
        )
    )  # fmt: skip
    if as_json:
        return json.dumps(rows, indent=2)
    if not rows:
        return "No datasets."
    if columns:
        names = [name.strip() for name in columns.split(",") if name.strip()]
    else:
        names = sorted({name for row in rows for name in row.get("results") or {}})
    return f"{results_table(rows, names, width=width)}\n{len(rows)} dataset(s)."
