"""Storing the results of many datasets at once: the Upload Successes of one status batch.

``Plan.of([(dataset, values), ...])`` checks every dataset's values against its project's
schema (one query, whatever their number) and says which it refuses; ``plan.write()``
replaces the accepted datasets' results: the new keys (two statements, when there are
any), one DELETE, one INSERT and the projects' versions. A key new to the schema takes the
kind of the first dataset of the batch that reports it, as if the datasets had been
stored one after the other. ``crunch.services.results.store`` is a plan of one dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F
from django.utils import timezone

from crunch.choices import AttributeKind
from crunch.db.bulk import insert_rows
from crunch.exceptions import InvalidResults
from crunch.models import Dataset, Result, ResultKey, ResultsVersion
from crunch.models.results import RESULT_COLUMN
from crunch.services.result_values import EXACT_FLOAT, Typed, check_results

VALUE_FIELDS = ["integer", "number", "flag", "text", "date", "moment", "lat", "lon"]
ROW_FIELDS = ["dataset", "key", *VALUE_FIELDS]
"""The columns of a result row as ``insert_rows`` fills them (``updated``: now, for all)."""


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def fit(dataset: Dataset, name: str, kind: str, typed: Typed) -> Typed:
    """``typed`` as a value of a key ``name`` of ``kind``; an integer widens to a float."""
    if typed.kind == kind:
        return typed
    if kind == AttributeKind.FLOAT and typed.kind == AttributeKind.INTEGER:
        if abs(typed.value) <= EXACT_FLOAT:
            return Typed(kind=AttributeKind.FLOAT, value=float(typed.value))
    theirs, ours = AttributeKind(kind).label.lower(), typed.kind.label.lower()
    raise InvalidResults(
        f"Results of dataset {dataset.slug!r}: {name!r} is {article(ours)} {ours}, but "
        f"the project's {name!r} is {article(theirs)} {theirs} (fixed by its first "
        "value): report the same kind, or use another key."
    )


def refuse_column_clash(dataset: Dataset, kinds: Mapping[str, str]) -> None:
    """A lat-long ``where`` is exported as ``where_lat`` and ``where_lon``: no key may take them."""
    for name, kind in kinds.items():
        if kind == AttributeKind.LATLONG:
            for column in (f"{name}_lat", f"{name}_lon"):
                if column in kinds:
                    raise InvalidResults(
                        f"Results of dataset {dataset.slug!r}: {column!r} would share the "
                        f"exported column of the lat-long {name!r}; rename one of them."
                    )


def row_values(typed: Typed) -> list[Any]:
    """The value columns of one result, in VALUE_FIELDS order: its kind's set, others NULL."""
    values: list[Any] = [None] * len(VALUE_FIELDS)
    if typed.kind == AttributeKind.LATLONG:
        values[-2:] = typed.value
    else:
        values[VALUE_FIELDS.index(RESULT_COLUMN[typed.kind])] = typed.value
    return values


@dataclass
class Plan:
    """The results of several datasets, checked against their projects' schemas."""

    accepted: list[tuple[Dataset, dict[str, Typed]]] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    """{dataset id: why its results are refused, in one line naming the dataset and key}."""
    schema: dict[tuple[int, str], str] = field(default_factory=dict)
    """{(project id, key name): kind} as read, with the keys this plan adds."""
    ids: dict[tuple[int, str], int] = field(default_factory=dict)
    """{(project id, key name): key id} of the keys read."""
    new: dict[tuple[int, str], str] = field(default_factory=dict)
    """The keys this plan adds: {(project id, name): kind}."""

    @classmethod
    def of(cls, items: Sequence[tuple[Dataset, Mapping[str, Any]]]) -> Plan:
        """Check each dataset's values, in order; one query reads the projects' schemas."""
        plan = cls()
        checked: list[tuple[Dataset, dict[str, Typed]]] = []
        for dataset, values in items:
            try:
                checked.append((dataset, check_results(values, dataset=dataset.slug)))
            except InvalidResults as exc:
                plan.refused[dataset.pk] = str(exc)
        projects = sorted({dataset.project_id for dataset, found in checked if found})
        if projects:
            found = ResultKey.objects.filter(project_id__in=projects).order_by()
            for pk, pid, name, kind in found.values_list("pk", "project_id", "name", "kind"):
                plan.schema[pid, name], plan.ids[pid, name] = kind, pk
        for dataset, typed in checked:
            try:
                plan.accept(dataset, typed)
            except InvalidResults as exc:
                plan.refused[dataset.pk] = str(exc)
        return plan

    def accept(self, dataset: Dataset, checked: dict[str, Typed]) -> None:
        """Fit ``checked`` to the schema (InvalidResults when it does not), adding its new keys."""
        project = dataset.project_id
        fitted: dict[str, Typed] = {}
        added: dict[tuple[int, str], str] = {}
        for name, typed in checked.items():
            kind = self.schema.get((project, name))
            if kind is None:
                added[project, name] = typed.kind
                fitted[name] = typed
            else:
                fitted[name] = fit(dataset, name, kind, typed)
        if added:  # a schema that passed before passes again unless it grew
            kinds = {name: kind for (pid, name), kind in self.schema.items() if pid == project}
            refuse_column_clash(dataset, kinds | {name: kind for (_, name), kind in added.items()})
            self.schema.update(added)
            self.new.update(added)
        self.accepted.append((dataset, fitted))

    def write(self) -> None:
        """Replace the accepted datasets' results, in the caller's transaction.

        A key that another request added meanwhile with another kind raises InvalidResults
        (the kind that won is enforced): the caller's transaction is then rolled back.
        """
        if not self.accepted:
            return
        keys = self.key_ids()
        rows = []
        for dataset, fitted in self.accepted:
            for name, typed in fitted.items():
                key_id, kind = keys[dataset.project_id, name]
                rows.append((dataset.pk, key_id, *row_values(fit(dataset, name, kind, typed))))
        datasets = [dataset.pk for dataset, _ in self.accepted]
        Result.objects.filter(dataset_id__in=datasets).delete()
        if rows:
            insert_rows(Result, {}, ROW_FIELDS, rows)
        bump({dataset.project_id for dataset, _ in self.accepted})

    def key_ids(self) -> dict[tuple[int, str], tuple[int, str]]:
        """{(project id, name): (key id, kind)} of the keys in use, the new ones created and
        read back: a key another request created meanwhile has the kind that won."""
        keys = {at: (pk, self.schema[at]) for at, pk in self.ids.items()}
        if not self.new:
            return keys
        ResultKey.objects.bulk_create(
            [ResultKey(project_id=pid, name=name, kind=kind) for (pid, name), kind in
             sorted(self.new.items())],
            ignore_conflicts=True,
        )  # fmt: skip
        projects = sorted({pid for pid, _ in self.new})
        names = sorted({name for _, name in self.new})
        found = ResultKey.objects.filter(project_id__in=projects, name__in=names).order_by()
        for pk, pid, name, kind in found.values_list("pk", "project_id", "name", "kind"):
            keys[pid, name] = (pk, kind)
        return keys


def bump(projects: Iterable[int]) -> None:
    """Add one to the results version of each project (created at 1 on its first store)."""
    ids = sorted(projects)
    stamp = {"version": F("version") + 1, "changed": timezone.now()}
    if ResultsVersion.objects.filter(project_id__in=ids).update(**stamp) == len(ids):
        return
    found = ResultsVersion.objects.filter(project_id__in=ids).values_list("project", flat=True)
    having = set(found)
    missing = [pid for pid in ids if pid not in having]
    ResultsVersion.objects.bulk_create(
        [ResultsVersion(project_id=pid, version=0) for pid in missing], ignore_conflicts=True
    )
    ResultsVersion.objects.filter(project_id__in=missing).update(**stamp)
