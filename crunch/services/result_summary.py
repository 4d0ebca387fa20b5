"""The shape of a project's results, for its page: computed in SQL, cached per version.

Per numeric key: count, min, median, max and a histogram of BINS equal bins; per date
key: count, min, median, max; per text or boolean key: the TOP most frequent values and
their counts; per lat-long key: at most POINTS points, every n-th by dataset id. Each
figure is one query on the key's partial index (the median is an ``ORDER BY ... OFFSET``
on it). The summary is cached with the project's results version, which every store
bumps, so a page reads it in one cache hit until the results change; SECONDS bounds how
long a deletion of datasets (which bumps nothing) may go unseen. While a run stores
results, the version moves with every dataset: a caller that passes ``stale`` (the project
page) keeps a summary that is at most that many seconds old, so the figures are computed
again at most once per ``stale`` seconds, not once per page view.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db.models import Count, F, Max, Min, QuerySet
from django.db.models.functions import Floor

from crunch.choices import AttributeKind
from crunch.models import Project, Result, ResultKey
from crunch.services.results import schema, version

BINS = 20
TOP = 20
POINTS = 5000
SECONDS = 300  # the longest a cached summary is kept
NUMERIC = (AttributeKind.INTEGER, AttributeKind.FLOAT)
ORDERED = (*NUMERIC, AttributeKind.DATE, AttributeKind.DATETIME)


@dataclass(frozen=True, kw_only=True)
class KeySummary:
    """One key's figures; which are set depends on its kind."""

    name: str
    kind: str
    count: int
    minimum: Any = None
    median: Any = None
    maximum: Any = None
    bins: list[int] = field(default_factory=list)
    """Counts of BINS equal bins from minimum to maximum (the last one closed)."""
    top: list[tuple[Any, int]] = field(default_factory=list)
    """(value, count), most frequent first, ties by value."""
    others: int = 0
    """Values outside ``top``."""
    points: list[tuple[float, float]] = field(default_factory=list)
    """(lat, lon) of a sample of the lat-long values."""

    @property
    def bin_edges(self) -> list[float]:
        """The BINS + 1 edges of the histogram's bins."""
        if not self.bins:
            return []
        width = (self.maximum - self.minimum) / len(self.bins)
        return [self.minimum + width * i for i in range(len(self.bins))] + [self.maximum]


@dataclass(frozen=True, kw_only=True)
class ResultsSummary:
    project: str
    version: int
    keys: list[KeySummary]
    computed: float = 0.0
    """When the figures were computed (``time.time()``)."""


def values_of(key: ResultKey) -> QuerySet[Result]:
    """The key's rows that hold a value, read through its partial index."""
    column = key.column
    return Result.objects.filter(key=key, **{f"{column}__isnull": False}).order_by()


def median(rows: QuerySet[Result], column: str, count: int, kind: str) -> Any:
    """The middle value (the mean of the two middle numbers for an even count)."""
    ordered = rows.order_by(column).values_list(column, flat=True)
    middle = list(ordered[(count - 1) // 2 : count // 2 + 1])
    if len(middle) == 2 and kind in NUMERIC and middle[0] != middle[1]:
        return (middle[0] + middle[1]) / 2
    return middle[0]


def histogram(rows: QuerySet[Result], column: str, low: float, high: float) -> list[int]:
    """Counts of BINS equal bins between ``low`` and ``high``, in one GROUP BY."""
    count = rows.count() if high == low else None
    if count is not None:
        return [count] + [0] * (BINS - 1)
    width = (high - low) / BINS
    grouped = (
        rows.annotate(bin=Floor((F(column) - low) / width))
        .values("bin")
        .annotate(n=Count("id"))
        .values_list("bin", "n")
    )
    bins = [0] * BINS
    for index, n in grouped:
        bins[min(int(index), BINS - 1)] += n  # the maximum falls on the last edge
    return bins


def ordered_summary(key: ResultKey) -> KeySummary:
    rows, column = values_of(key), key.column
    figures = rows.aggregate(count=Count("id"), low=Min(column), high=Max(column))
    count = figures["count"]
    if not count:
        return KeySummary(name=key.name, kind=key.kind, count=0)
    low, high = figures["low"], figures["high"]
    bins = histogram(rows, column, float(low), float(high)) if key.kind in NUMERIC else []
    return KeySummary(
        name=key.name, kind=key.kind, count=count, minimum=low, maximum=high,
        median=median(rows, column, count, key.kind), bins=bins,
    )  # fmt: skip


def counted_summary(key: ResultKey) -> KeySummary:
    rows, column = values_of(key), key.column
    count = rows.count()
    grouped = rows.values(column).annotate(n=Count("id")).order_by("-n", column)
    top = [(row[column], row["n"]) for row in grouped[:TOP]]
    others = count - sum(n for _, n in top)
    return KeySummary(name=key.name, kind=key.kind, count=count, top=top, others=others)


def points_summary(key: ResultKey) -> KeySummary:
    rows = values_of(key)
    count = rows.count()
    step = max(1, math.ceil(count / POINTS))
    if step > 1:
        rows = rows.alias(every=F("dataset_id") % step).filter(every=0)
    sample = rows.order_by("dataset_id").values_list("lat", "lon")[:POINTS]
    points = [(lat, lon) for lat, lon in sample if lat is not None and lon is not None]
    return KeySummary(name=key.name, kind=key.kind, count=count, points=points)


def key_summary(key: ResultKey) -> KeySummary:
    """The figures of one key, by its kind."""
    if key.kind in ORDERED:
        return ordered_summary(key)
    if key.kind == AttributeKind.LATLONG:
        return points_summary(key)
    return counted_summary(key)


def summary(project: Project, *, stale: float = 0, stamp: int | None = None) -> ResultsSummary:
    """The project's results summary, from the cache while the results are unchanged, or
    changed less than ``stale`` seconds after it was computed. ``stamp``: the project's
    results version, when the caller has just read it."""
    stamp = version(project) if stamp is None else stamp
    cache_key = f"crunch:results-summary:{project.pk}"
    found: ResultsSummary | None = cache.get(cache_key)
    if found is not None and (
        found.version == stamp or (stale and time.time() - found.computed < stale)
    ):
        return found
    keys = [key_summary(key) for key in schema(project).values()]
    found = ResultsSummary(project=project.slug, version=stamp, keys=keys, computed=time.time())
    cache.set(cache_key, found, SECONDS)
    return found
