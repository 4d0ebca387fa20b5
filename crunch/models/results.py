"""What workflows report: typed results per dataset, under a per-project schema.

Storage is a schema table and a typed value table rather than a JSON field, because a
filter and a sort must be index lookups on SQLite and PostgreSQL alike:

- ``ResultKey(project, name, kind)``: the project's schema. A key's kind is fixed by the
  first value reported for it and enforced after.
- ``Result(dataset, key, <one typed column>)``: one row per dataset and key, its value in
  the column of its kind (an ``int`` in a 64-bit integer column, so it round-trips
  exactly). Each typed column has a partial index ``(key, column, dataset)`` over the rows
  that use it: ``score>0.9`` is a range scan of one index, read as a semi-join
  (``dataset IN (SELECT dataset FROM result WHERE key=? AND number>?)``), and a sort by
  ``score`` walks the same index. JSON fields would need expression indexes per key,
  written differently for each database, and compare JSON numbers as text on SQLite.
- ``ResultsVersion(project, version)``: bumped by every store, so that cached summaries
  of the project's results know when they are stale, in every server process.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.db import models
from django.db.models import Q
from django.utils import timezone

from crunch.choices import RESULT_KINDS, AttributeKind
from crunch.constants import RESULT_KEY_MAX, RESULT_TEXT_MAX
from crunch.models.datasets import Dataset
from crunch.models.projects import Project

RESULT_COLUMN = {
    AttributeKind.INTEGER: "integer", AttributeKind.FLOAT: "number",
    AttributeKind.BOOLEAN: "flag", AttributeKind.TEXT: "text",
    AttributeKind.DATE: "date", AttributeKind.DATETIME: "moment",
}  # fmt: skip
"""{kind: the column of ``Result`` holding its value}; a lat-long holds ``lat`` and ``lon``."""

KEY_MAX = RESULT_KEY_MAX
TEXT_MAX = RESULT_TEXT_MAX


class LatLon(NamedTuple):
    """A lat-long result: degrees north and east."""

    lat: float
    lon: float


class ResultKey(models.Model):
    """One key of a project's results and the kind its first value fixed."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="result_keys")
    name = models.CharField(max_length=KEY_MAX)
    kind = models.CharField(
        max_length=16, choices=[(kind.value, kind.label) for kind in RESULT_KINDS]
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="crunch_result_key")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def column(self) -> str:
        """The ``Result`` column holding this key's values (``lat`` for a lat-long)."""
        return RESULT_COLUMN.get(AttributeKind(self.kind), "lat")


def typed_index(column: str) -> models.Index:
    """The partial index serving filters and sorts on one typed column."""
    return models.Index(
        fields=["key", column, "dataset"],
        name=f"crunch_result_{column}",
        condition=Q(**{f"{column}__isnull": False}),
    )


class Result(models.Model):
    """One result of one dataset, in the column of its key's kind (the others NULL)."""

    # The unique (dataset, key) index serves lookups by dataset: no index of its own.
    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, related_name="results", db_index=False
    )
    key = models.ForeignKey(ResultKey, on_delete=models.CASCADE, related_name="values")
    integer = models.BigIntegerField(null=True, blank=True)
    number = models.FloatField(null=True, blank=True)
    flag = models.BooleanField(null=True, blank=True)
    # NULL, not "": each typed column is NULL on the rows of other kinds (partial indexes).
    text = models.CharField(max_length=TEXT_MAX, null=True, blank=True)  # noqa: DJ001
    date = models.DateField(null=True, blank=True)
    moment = models.DateTimeField(null=True, blank=True)
    lat = models.FloatField(null=True, blank=True)
    lon = models.FloatField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["dataset", "key"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "key"], name="crunch_result_dataset_key")
        ]
        indexes = [typed_index(column) for column in RESULT_COLUMN.values()]

    def __str__(self) -> str:
        return f"{self.key.name}={self.value!r}"

    @property
    def value(self) -> Any:
        """The Python value: int, float, bool, str, date, datetime or LatLon."""
        return value_of(self.key.kind, self)


def value_of(kind: str, row: Any) -> Any:
    """The value of ``row`` (a Result, or anything with its columns) for a key of ``kind``."""
    if kind == AttributeKind.LATLONG:
        return LatLon(row.lat, row.lon)
    return getattr(row, RESULT_COLUMN[AttributeKind(kind)])


class ResultsVersion(models.Model):
    """A counter per project, bumped by each store: the key of cached summaries."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, primary_key=True, related_name="results_version"
    )
    version = models.BigIntegerField(default=0)
    changed = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.project_id}: version {self.version}"
