"""A project's results over HTTP: the streamed table, and its JSON Lines as typed rows.

``GET api/projects/<slug>/results/`` streams CSV or JSON Lines and names each column's
kind in the ``Crunch-Result-Kinds`` header (``words:int,score:float,where:latlong``), so
the rows are typed exactly as the server's ``crunch.services.results`` types them, and a
Parquet file gets its schema before the first row. The bytes are handed on as they come,
in chunks: memory stays flat whatever the project's size.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import requests

from crunch.choices import RESULT_KINDS, AttributeKind
from crunchclient.exceptions import ServerError

KINDS_HEADER = "Crunch-Result-Kinds"
CHUNK = 64 * 1024  # bytes read from the socket at a time
FORMATS = ("csv", "jsonl")
"""The formats the server streams (Parquet is written by the client from JSON Lines)."""


class LatLon(NamedTuple):
    """A lat-long result: degrees north and east (as the server's ``LatLon``)."""

    lat: float
    lon: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ResultRow:
    """One dataset and its results: {key: int, float, bool, str, date, datetime or LatLon}.

    The client's twin of ``crunch.services.results.ResultRow``: a key the dataset did not
    report is absent from ``values``.
    """

    dataset: str
    state: str
    values: dict[str, Any] = field(default_factory=dict)


KINDS = tuple(str(kind.value) for kind in AttributeKind if kind in RESULT_KINDS)
"""The result kinds this client reads, by name."""


def kinds_of(header: str) -> dict[str, str]:
    """{key: kind} in column order, from the ``Crunch-Result-Kinds`` header; a kind this
    client does not know (a newer server's) is a one-line ServerError, not a crash later."""
    pairs = (item.strip().partition(":") for item in header.split(",") if item.strip())
    kinds = {name: kind for name, _, kind in pairs}
    for name, kind in kinds.items():
        if kind not in KINDS:
            raise ServerError(
                f"The server sent the result {name[:64]!r} as a {kind[:32]!r}, a kind this "
                f"client does not know ({', '.join(KINDS)}): upgrade django-crunch here."
            )
    return kinds


def typed_value(kind: str, value: Any) -> Any:
    """A JSON value as the Python value of its key's kind."""
    if value is None:
        return None
    if kind == "date":
        return datetime.date.fromisoformat(value)
    if kind == "datetime":
        return datetime.datetime.fromisoformat(value)
    if kind == "latlong":
        return LatLon(float(value["lat"]), float(value["lon"]))
    if kind == "float":
        return float(value)
    return value


def typed_row(record: dict[str, Any], kinds: dict[str, str]) -> ResultRow:
    """A JSON Lines record as a ResultRow; the results it lacks (null) left out."""
    values = {
        name: typed_value(kind, record[name])
        for name, kind in kinds.items()
        if record.get(name) is not None
    }
    return ResultRow(dataset=record["dataset"], state=record["state"], values=values)


@dataclass
class ResultStream:
    """A results table as the server streams it: its column kinds, then its bytes."""

    response: requests.Response
    format: str

    @property
    def kinds(self) -> dict[str, str]:
        return kinds_of(self.response.headers.get(KINDS_HEADER, ""))

    def chunks(self) -> Iterator[bytes]:
        """The bytes as they arrive; ServerError when the connection breaks before the end.

        A table ends with a line end: a last chunk without one is a cut the transport
        did not see (a server that marks the end by closing the connection).
        """
        last = b""
        try:
            for chunk in self.response.iter_content(CHUNK):
                if chunk:
                    last = chunk
                    yield chunk
        except requests.RequestException as exc:
            raise self.broken(type(exc).__name__) from exc
        finally:
            self.response.close()
        if last and not last.endswith(b"\n"):
            raise self.broken("it ended in the middle of a line")

    def lines(self) -> Iterator[bytes]:
        """The lines of the table, each without its line end."""
        rest = b""
        for chunk in self.chunks():
            *whole, rest = (rest + chunk).split(b"\n")
            yield from whole

    def broken(self, why: str) -> ServerError:
        return ServerError(
            f"The results stream from {self.response.url!r} broke ({why}): the export is "
            "incomplete; run it again."
        )


def params_of(
    *, format: str, where: Sequence[str] = (), columns: str | Sequence[str] | None = None,
    sort: str | None = None,
) -> dict[str, str | list[str]]:  # fmt: skip
    """The query of the results endpoint (and the dataset list's result options)."""
    params: dict[str, str | list[str]] = {}
    if format:
        params["format"] = format
    if where:
        params["where"] = list(where)
    if columns:
        params["columns"] = columns if isinstance(columns, str) else ",".join(columns)
    if sort:
        params["sort"] = sort
    return params
