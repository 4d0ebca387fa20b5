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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q

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

    def datasets(self) -> Any:
        """The selected datasets, filtered and sorted: (id, slug, state) tuples."""
        datasets = self.selection.apply(Dataset.objects.filter(project=self.project))
        if self.selection.sort is None:
            datasets = datasets.order_by("id")
        return datasets.values_list("id", "slug", "state")

    def rows(self, chunk_size: int = CHUNK) -> Iterator[ResultRow]:
        """One row per selected dataset, its results read chunk by chunk.

        Per chunk, one query per value column in use, each reading that column only:
        converting unused columns cost more than reading the rows.
        """
        by_column: dict[tuple[str, ...], dict[int, str]] = {}
        for key in self.columns:
            columns: tuple[str, ...] = (
                ("lat", "lon") if key.kind == AttributeKind.LATLONG else (key.column,)
            )
            by_column.setdefault(columns, {})[key.pk] = key.name
        order = [key.name for key in self.columns]
        iterator = self.datasets().iterator(chunk_size=chunk_size)
        while chunk := list(itertools.islice(iterator, chunk_size)):
            values: dict[int, dict[str, Any]] = {pk: {} for pk, _, _ in chunk}
            datasets = among(list(values))
            for columns, names in by_column.items():
                found = Result.objects.filter(datasets, key_id__in=list(names)).values_list(
                    "dataset_id", "key_id", *columns
                )
                if len(columns) == 2:
                    for dataset_id, key_id, lat, lon in found.iterator(chunk_size * 4):
                        if (shown := values.get(dataset_id)) is not None:
                            shown[names[key_id]] = LatLon(lat, lon)
                else:
                    for dataset_id, key_id, value in found.iterator(chunk_size * 4):
                        if (shown := values.get(dataset_id)) is not None:
                            shown[names[key_id]] = value
            for pk, slug, state in chunk:
                found_values = values[pk]
                shown = {name: found_values[name] for name in order if name in found_values}
                yield ResultRow(dataset=slug, state=state, values=shown)


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
    return Table(
        project=project,
        columns=columns_of(keys, columns),
        selection=Selection.of(keys, where, sort),
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
