"""The results workflows report: stored typed, read back as rows.

``store(dataset, values)`` replaces a dataset's results in one transaction (a retried run
replaces them); each key's kind is fixed by the first value the project saw for it and
enforced after. ``rows(project, where=..., columns=..., sort=...)`` yields one typed
``ResultRow`` per dataset, reading the datasets and their results in chunks so memory
stays flat whatever the project's size. The package exposes it as
``crunch.services.results(project, ...)``; ``store``, ``rows`` and ``schema`` are this
module's (``from crunch.services.results import store``).

Storage (crunch.models.results) is a schema table and a typed value table with a partial
index per value column: see docs/how-it-works/results.md for why.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q

from crunch.choices import AttributeKind
from crunch.exceptions import InvalidResults
from crunch.models import Dataset, LatLon, Project, Result, ResultKey, ResultsVersion
from crunch.services.result_filters import Selection, Sort, Where, columns_of
from crunch.services.result_store import Plan
from crunch.services.result_store import bump as bump_versions

CHUNK = 2000  # datasets read per query while iterating rows


@dataclass(frozen=True, kw_only=True, slots=True)
class ResultRow:
    """One dataset and its results: {key: int, float, bool, str, date, datetime or LatLon}."""

    dataset: str
    state: str
    values: dict[str, Any] = field(default_factory=dict)


def schema(project: Project) -> dict[str, ResultKey]:
    """The project's result keys by name, in name order."""
    return {key.name: key for key in project.result_keys.order_by("name")}


def version(project: Project) -> int:
    """The project's results version: it changes whenever any of its results do."""
    found = ResultsVersion.objects.filter(project=project).values_list("version", flat=True)
    return next(iter(found), 0)


def store(dataset: Dataset, values: Mapping[str, Any]) -> None:
    """Replace the dataset's results with ``values`` (checked here, whoever checked before).

    One transaction: the key kinds are checked, the old rows deleted, the new inserted and
    the project's results version bumped, or nothing changes. InvalidResults names the
    dataset and the key. A batch of datasets is one ``result_store.Plan``, as this one is.
    """
    plan = Plan.of([(dataset, values)])
    if dataset.pk in plan.refused:
        raise InvalidResults(plan.refused[dataset.pk])
    with transaction.atomic():
        plan.write()


def bump(project: Project) -> None:
    """Add one to the project's results version (created at 1 on its first store)."""
    bump_versions([project.pk])


def values_of(dataset: Dataset) -> dict[str, Any]:
    """The dataset's results, by key name."""
    found = Result.objects.filter(dataset=dataset).select_related("key").order_by("key__name")
    return {row.key.name: row.value for row in found}


@dataclass(frozen=True, kw_only=True)
class Table:
    """The rows of a project's results a request asks for, checked before any is read."""

    project: Project
    columns: list[ResultKey]
    selection: Selection
    every: bool = False
    """Whether the columns are all the project's keys: no key filter is needed."""

    def datasets(self) -> Any:
        """The selected datasets, filtered and sorted: (id, slug, state) tuples."""
        datasets = self.selection.apply(Dataset.objects.filter(project=self.project))
        if self.selection.sort is None:
            datasets = datasets.order_by("id")
        return datasets.values_list("id", "slug", "state")

    def rows(self, chunk_size: int = CHUNK) -> Iterator[ResultRow]:
        """One row per selected dataset, its results read chunk by chunk.

        Per chunk, one query reads the chunk's results, the value columns in use only:
        a range scan of the unique (dataset, key) index (``among``), never of the key's
        index. A key filter (some columns only) is written ``key_id + 0 IN (...)``, which
        no index serves: SQLite, without statistics, would otherwise walk the key index,
        every row of those keys for every chunk, and the export would take the square of
        its size. No ordering: Result's default one joins the dataset and key tables.
        """
        keys = {key.pk: key for key in self.columns}
        used = [c for c in VALUE_COLUMNS if any(c in columns_of_key(k) for k in keys.values())]
        place = {column: index for index, column in enumerate(used, start=2)}
        order = [key.name for key in self.columns]
        iterator = self.datasets().iterator(chunk_size=chunk_size)
        while chunk := list(itertools.islice(iterator, chunk_size)):
            values: dict[int, dict[str, Any]] = {pk: {} for pk, _, _ in chunk}
            if not used:
                found_rows: Iterator[tuple[Any, ...]] = iter(())
            else:
                found = Result.objects.filter(among(list(values))).order_by()
                if not self.every:
                    found = found.alias(unindexed=F("key_id") + 0).filter(unindexed__in=list(keys))
                found_rows, converter = as_driver_gives(
                    found.values_list("dataset_id", "key_id", *used)
                )
                # {key id: (name, index, its converter); a lat-long's lon: index + 1}
                lookup = {
                    pk: (key.name, place[key.column], converter(place[key.column]),
                         key.kind == AttributeKind.LATLONG)
                    for pk, key in keys.items()
                }  # fmt: skip
            for row in found_rows:
                key = lookup.get(row[1])
                if key is None or (shown := values.get(row[0])) is None:
                    continue  # a key not asked for, a dataset of the range not selected
                name, index, convert, pair = key
                value = row[index]
                if convert is not None and value is not None:
                    value = convert(value)
                shown[name] = LatLon(value, row[index + 1]) if pair else value
            for pk, slug, state in chunk:
                found_values = values[pk]
                shown = {name: found_values[name] for name in order if name in found_values}
                yield ResultRow(dataset=slug, state=state, values=shown)


VALUE_COLUMNS = ("integer", "number", "flag", "text", "date", "moment", "lat", "lon")
FETCH = 8000  # rows fetched from the driver at once


def as_driver_gives(
    queryset: Any,
) -> tuple[Iterator[tuple[Any, ...]], Callable[[int], Callable[[Any], Any] | None]]:
    """The rows of a ``values_list`` queryset as the database driver gives them, and the
    converter of the value at an index as the queryset would apply it (None: the driver's
    value is the value), from its compiler's own converters, found once, as crunch.db.rows
    loads rows. A result row uses one of its value columns: converting the others, all
    NULL, was most of an export's time."""
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    converters = compiler.get_converters([expression for expression, _, _ in compiler.select])
    connection = connections[queryset.db]

    def converter(index: int) -> Callable[[Any], Any] | None:
        if index not in converters:
            return None
        functions, expression = converters[index]

        def convert(value: Any) -> Any:
            for function in functions:
                value = function(value, expression, connection)
            return value

        return convert

    def rows() -> Iterator[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            while batch := cursor.fetchmany(FETCH):
                yield from batch

    return rows(), converter


def columns_of_key(key: ResultKey) -> tuple[str, ...]:
    """The value columns of ``key``'s rows: its kind's, or ``lat`` and ``lon``."""
    return ("lat", "lon") if key.kind == AttributeKind.LATLONG else (key.column,)


def among(ids: list[int]) -> Q:
    """Result rows of the datasets ``ids``: a range of ids when they are about contiguous
    (a table in id order), whose rows outside ``ids`` are skipped; else the list itself.
    A range costs one bound each side; a list, Django's preparation of every id."""
    low, high = min(ids), max(ids)
    if high - low < 2 * len(ids):
        return Q(dataset_id__gte=low, dataset_id__lte=high)
    return Q(dataset_id__in=ids)


def table(
    project: Project,
    *,
    where: Iterable[str | Where] = (),
    columns: str | Sequence[str] | None = None,
    sort: str | Sort | None = None,
) -> Table:
    """Check the filters, columns and sort against the project's schema (InvalidFilter)."""
    keys = schema(project)
    chosen = columns_of(keys, columns)
    return Table(
        project=project,
        columns=chosen,
        selection=Selection.of(keys, where, sort),
        every={key.pk for key in chosen} == {key.pk for key in keys.values()},
    )


def rows(
    project: Project,
    *,
    where: Iterable[str | Where] = (),
    columns: str | Sequence[str] | None = None,
    sort: str | Sort | None = None,
    chunk_size: int = CHUNK,
) -> Iterator[ResultRow]:
    """Yield the project's datasets with their results, filtered and sorted, flat in memory.

    The filters, columns and sort are checked at the call (InvalidFilter), before any row.
    """
    return table(project, where=where, columns=columns, sort=sort).rows(chunk_size)
