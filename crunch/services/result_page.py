"""The project page's results: which columns its table shows, its filters and sort, the
values of one page of datasets, and the charts of the Results section.

The query string is the state, so every view of the table is a link: ``?columns=score,site``
picks the columns (default: the first COLUMNS keys by name), ``?where=score>0.9`` (repeated)
filters, and ``?sort=-score`` sorts by a result, as in the API and the terminal. A filter,
sort or column the project cannot serve gives a one-line ``error`` and the table as if it
were not asked (the form keeps what was typed, to be corrected), never an error page.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.core.cache import cache
from django.utils.safestring import SafeString

from crunch.choices import AttributeKind
from crunch.exceptions import InvalidFilter
from crunch.models import Dataset, LatLon, Project, Result, ResultKey
from crunch.models.results import value_of
from crunch.services import charts
from crunch.services.result_filters import Selection, Sort, columns_of
from crunch.services.result_summary import SECONDS, KeySummary, summary
from crunch.services.results import schema, version

STALE = 30  # seconds the Results section may lag a run that keeps storing results
COLUMNS = 5  # result columns shown when the query string names none
WHERE_MAX = 10  # filters read from the query string
WHERE_CHARS = 200  # characters of one filter
COLUMNS_CHARS = 1000


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One result of one dataset, as the table shows it."""

    key: str
    text: str
    value: Any

    @property
    def numeric(self) -> bool:
        """Right-aligned, as figures are."""
        return isinstance(self.value, int | float) and not isinstance(self.value, bool)


@dataclass(frozen=True, kw_only=True)
class PageResults:
    """What the query string asks of the project's results, checked against its schema."""

    keys: Mapping[str, ResultKey] = field(default_factory=dict)
    columns: list[ResultKey] = field(default_factory=list)
    selection: Selection | None = None
    """The filters and the result sort, when valid; None when there are neither."""
    where: list[str] = field(default_factory=list)
    """The filters as typed (shown back in the form)."""
    columns_text: str = ""
    sort: str = ""
    """The result sort asked (``-score``), "" for a sort of the page's own."""
    error: str = ""

    @property
    def sorts(self) -> list[tuple[str, str]]:
        """The sort choices the shown result columns add to the form."""
        choices = []
        sorted_by = self.selection.sort_key if self.selection else None
        shown = list(self.columns)
        if sorted_by is not None and sorted_by not in shown:
            shown.append(sorted_by)
        for key in shown:
            if key.kind != AttributeKind.LATLONG:
                choices += [(key.name, f"{key.name}, low to high"),
                            (f"-{key.name}", f"{key.name}, high to low")]  # fmt: skip
        return choices

    @property
    def filtered(self) -> bool:
        return bool(self.selection and self.selection.filters)

    @property
    def export_query(self) -> str:
        """The API's query string for the table as shown: its filters, sort and columns."""
        params: list[tuple[str, str]] = []
        if self.selection is not None:
            params += [("where", item) for item in self.where]
            params += [("sort", self.sort)] if self.sort else []
        params += [("columns", ",".join(key.name for key in self.columns))]
        return urlencode(params)


def read(project: Project, params: Any, page_sorts: Collection[str]) -> PageResults:
    """The project's result columns, filters and sort from the query string ``params``.

    A sort among ``page_sorts`` (name, state...) is the table's own and is left to it;
    any other is read as a result sort. One query: the project's schema.
    """
    # No NUL: PostgreSQL refuses it in text, and no result holds one.
    given = [item.replace("\x00", "") for item in params.getlist("where")]
    where = [item[:WHERE_CHARS] for item in given if item.strip()][:WHERE_MAX]
    columns_text = params.get("columns", "")[:COLUMNS_CHARS].replace("\x00", "")
    sort = params.get("sort", "").replace("\x00", "")
    sort = "" if not sort or sort in page_sorts else sort[:100]
    keys = schema(project)
    if not keys and not where and not sort and not columns_text:
        return PageResults()
    error, columns = "", default_columns(keys)
    try:
        if columns_text.strip():
            columns = columns_of(keys, columns_text)
    except InvalidFilter as refused:
        error = str(refused)
    selection = None
    try:
        if where or sort:
            selection = Selection.of(keys, where, Sort.parse(sort) if sort else None)
    except InvalidFilter as refused:
        error = error or str(refused)
    return PageResults(
        keys=keys, columns=columns, selection=selection, where=where,
        columns_text=columns_text, sort=sort if selection else "", error=error,
    )  # fmt: skip


def default_columns(keys: Mapping[str, ResultKey]) -> list[ResultKey]:
    return [keys[name] for name in sorted(keys)[:COLUMNS]]


def show(value: Any) -> str:
    if isinstance(value, LatLon):
        return f"{charts.number(value.lat)}, {charts.number(value.lon)}"
    return charts.number(value)


def attach(datasets: Sequence[Dataset], columns: Sequence[ResultKey]) -> None:
    """Set ``result_cells`` on each dataset: one Cell (or None) per column, in one query."""
    if not datasets:
        return
    by_dataset: dict[int, dict[int, Any]] = {dataset.pk: {} for dataset in datasets}
    if columns:
        kinds = {key.pk: key.kind for key in columns}
        found = Result.objects.filter(
            dataset_id__in=list(by_dataset), key_id__in=list(kinds)
        ).only("dataset_id", "key_id", "integer", "number", "flag", "text", "date", "moment",
               "lat", "lon")  # fmt: skip
        for row in found.order_by():
            by_dataset[row.dataset_id][row.key_id] = value_of(kinds[row.key_id], row)
    for dataset in datasets:
        values = by_dataset[dataset.pk]
        dataset.result_cells = [  # type: ignore[attr-defined]
            Cell(key=key.name, text=show(values[key.pk]), value=values[key.pk])
            if key.pk in values
            else None
            for key in columns
        ]


@dataclass(frozen=True, kw_only=True)
class Chart:
    """One key of the Results section: its figures and its SVG."""

    summary: KeySummary
    svg: SafeString

    @property
    def figures(self) -> list[tuple[str, str]]:
        """(label, value) pairs shown beside the chart."""
        found = self.summary
        if found.minimum is not None:
            return [("values", charts.number(found.count)), ("min", charts.number(found.minimum)),
                    ("median", charts.number(found.median)),
                    ("max", charts.number(found.maximum))]  # fmt: skip
        if found.kind == AttributeKind.LATLONG:
            return [("locations", charts.number(found.count)),
                    ("drawn", charts.number(len(found.points)))]  # fmt: skip
        distinct = f"{len(found.top)}+" if found.others else str(len(found.top))
        return [("values", charts.number(found.count)), ("distinct", distinct)]


@dataclass(frozen=True, kw_only=True)
class Section:
    """The Results section: a chart per key, and when its figures were computed."""

    charts: list[Chart]
    computed: datetime.datetime
    current: bool
    """False while newer results than the figures' wait for the next computation."""


def section(project: Project) -> Section:
    """The charts of every key, drawn once per summary and cached with it.

    While a run stores results the summary is kept up to STALE seconds (see
    result_summary), so a busy project's page computes its figures at most that often.
    Two cache reads and one query (the version) otherwise: drawing 5,000 points costs more
    than reading them.
    """
    stamp = version(project)
    found = summary(project, stale=STALE, stamp=stamp)
    cache_key = f"crunch:results-charts:{project.pk}:{found.version}:{found.computed}"
    drawn: list[Chart] | None = cache.get(cache_key)
    if drawn is None:
        drawn = [Chart(summary=key, svg=charts.chart(key)) for key in found.keys]
        cache.set(cache_key, drawn, SECONDS)
    return Section(
        charts=drawn,
        computed=datetime.datetime.fromtimestamp(found.computed, tz=datetime.UTC),
        current=found.version == stamp,
    )
