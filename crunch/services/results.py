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
from django.db.models import F, Q
from django.utils import timezone

from crunch.choices import AttributeKind
from crunch.exceptions import InvalidResults
from crunch.models import Dataset, LatLon, Project, Result, ResultKey, ResultsVersion
from crunch.models.results import RESULT_COLUMN
from crunch.services.result_filters import Selection, Sort, Where, columns_of
from crunch.services.result_values import EXACT_FLOAT, Typed, check_results

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


def result_row(dataset: Dataset, key: ResultKey, typed: Typed) -> Result:
    row = Result(dataset=dataset, key=key)
    if key.kind == AttributeKind.LATLONG:
        row.lat, row.lon = typed.value
    else:
        setattr(row, RESULT_COLUMN[AttributeKind(key.kind)], typed.value)
    return row


def fit(dataset: Dataset, key: ResultKey, typed: Typed) -> Typed:
    """``typed`` as a value of ``key``'s kind; an integer widens to a float key's float."""
    if typed.kind == key.kind:
        return typed
    if key.kind == AttributeKind.FLOAT and typed.kind == AttributeKind.INTEGER:
        if abs(typed.value) <= EXACT_FLOAT:
            return Typed(kind=AttributeKind.FLOAT, value=float(typed.value))
    theirs, ours = AttributeKind(key.kind).label.lower(), typed.kind.label.lower()
    raise InvalidResults(
        f"Results of dataset {dataset.slug!r}: {key.name!r} is {article(ours)} {ours}, but "
        f"the project's {key.name!r} is {article(theirs)} {theirs} (fixed by its first "
        "value): report the same kind, or use another key."
    )


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def keys_for(project: Project, checked: Mapping[str, Typed]) -> tuple[dict[str, ResultKey], bool]:
    """The project's keys for ``checked``, created with the kind of their first value, and
    whether any was missing.

    Two datasets may bring a new key at once: inserts that lose the race are ignored and
    the key is read back, so the kind that won is the one enforced.
    """
    names = sorted(checked)
    found = {key.name: key for key in project.result_keys.filter(name__in=names)}
    missing = [name for name in names if name not in found]
    if missing:
        ResultKey.objects.bulk_create(
            [ResultKey(project=project, name=name, kind=checked[name].kind) for name in missing],
            ignore_conflicts=True,
        )
        found.update((key.name, key) for key in project.result_keys.filter(name__in=missing))
    return found, bool(missing)


def refuse_column_clash(dataset: Dataset, keys: Iterable[ResultKey]) -> None:
    """A lat-long ``where`` is exported as ``where_lat`` and ``where_lon``: no key may take them."""
    names = {key.name for key in keys}
    for key in keys:
        if key.kind == AttributeKind.LATLONG:
            for column in (f"{key.name}_lat", f"{key.name}_lon"):
                if column in names:
                    raise InvalidResults(
                        f"Results of dataset {dataset.slug!r}: {column!r} would share the "
                        f"exported column of the lat-long {key.name!r}; rename one of them."
                    )


def store(dataset: Dataset, values: Mapping[str, Any]) -> list[Result]:
    """Replace the dataset's results with ``values`` (checked here, whoever checked before).

    One transaction: the key kinds are checked, the old rows deleted, the new inserted and
    the project's results version bumped, or nothing changes. InvalidResults names the
    dataset and the key.
    """
    checked = check_results(values, dataset=dataset.slug)
    project = dataset.project
    with transaction.atomic():
        keys, created = keys_for(project, checked) if checked else ({}, False)
        if created:  # a schema that passed before passes again unless it grew
            refuse_column_clash(dataset, project.result_keys.all())
        rows = [result_row(dataset, keys[name], fit(dataset, keys[name], typed))
                for name, typed in checked.items()]  # fmt: skip
        Result.objects.filter(dataset=dataset).delete()
        Result.objects.bulk_create(rows)
        bump(project)
    return rows


def bump(project: Project) -> None:
    """Add one to the project's results version (created at 1 on its first store)."""
    stamp = {"version": F("version") + 1, "changed": timezone.now()}
    if not ResultsVersion.objects.filter(project=project).update(**stamp):
        ResultsVersion.objects.bulk_create(
            [ResultsVersion(project=project, version=0)], ignore_conflicts=True
        )
        ResultsVersion.objects.filter(project=project).update(**stamp)


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
