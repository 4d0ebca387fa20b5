"""Filters, sorts and columns over a project's results, typed by its schema.

``score>0.9``, ``site=north``, ``name~abc`` (contains, case-sensitive, text only); the
operators are ``= != < <= > >= ~``. A filter keeps the datasets that have the key and
whose value passes: ``score!=1`` leaves out the datasets without a score. Each filter is
an indexed semi-join, ``dataset IN (SELECT dataset FROM result WHERE key=? AND ...)``,
with every filter on one key in the same subquery. A sort is ``score`` or ``-score``
(descending), or ``slug``/``-slug``; datasets without the key come last, and ties go by
dataset id in the sort's direction (so that an index serves the whole order).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, F, FilteredRelation, OuterRef, Q, QuerySet, Value
from django.db.models.functions import StrIndex
from django.db.models.lookups import GreaterThan

from crunch.choices import AttributeKind
from crunch.constants import INT64
from crunch.exceptions import InvalidFilter
from crunch.models import Dataset, Result, ResultKey
from crunch.services.result_values import shown

OPERATORS = ("<=", ">=", "!=", "=", "<", ">", "~")
WHERE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|!=|=|<|>|~)\s*(.*?)\s*\Z", re.DOTALL)
SORT = re.compile(r"(-?)([A-Za-z_][A-Za-z0-9_]*)\Z")
LOOKUPS = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
INTEGER = re.compile(r"[+-]?\d+\Z")
SORT_ALIAS = "sorted_result"

Schema = Mapping[str, ResultKey]
"""A project's result keys by name."""


def known(schema: Schema) -> str:
    """The end of a message about an unknown key: what the project has."""
    if not schema:
        return "the project has no results yet"
    return "the project's results are " + ", ".join(sorted(schema))


def key_of(schema: Schema, name: str, text: str) -> ResultKey:
    key = schema.get(name)
    if key is None:
        raise InvalidFilter(f"Unknown result {name!r} in {shown(text)}: {known(schema)}.")
    if key.kind == AttributeKind.LATLONG:
        raise InvalidFilter(
            f"{name!r} is a lat-long result: it can be shown, not filtered or sorted."
        )
    return key


def value_for(key: ResultKey, raw: str, text: str) -> Any:
    """``raw`` read as a value of ``key``'s kind, for a filter written as ``text``."""
    kind = AttributeKind(key.kind)
    label = kind.label.lower()
    article = "an" if label[0] in "aeiou" else "a"
    wrong = f"{key.name!r} is {article} {label} result; {shown(text)} compares it with {shown(raw)}"
    try:
        if kind == AttributeKind.INTEGER:
            if not INTEGER.match(raw) or not INT64[0] <= int(raw) <= INT64[1]:
                raise ValueError
            return int(raw)
        if kind == AttributeKind.FLOAT:
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind == AttributeKind.BOOLEAN:
            return {"true": True, "false": False}[raw.lower()]
        if kind == AttributeKind.DATE:
            return datetime.date.fromisoformat(raw)
        if kind == AttributeKind.DATETIME:
            moment = datetime.datetime.fromisoformat(raw)
            return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
    except (ValueError, KeyError):
        hint = {
            AttributeKind.INTEGER: "an integer",
            AttributeKind.FLOAT: "a number",
            AttributeKind.BOOLEAN: "true or false",
            AttributeKind.DATE: "an ISO date (2024-05-01)",
            AttributeKind.DATETIME: "an ISO date and time (2024-05-01T12:00:00Z)",
        }[kind]
        raise InvalidFilter(f"{wrong}: give {hint}.") from None
    return raw


@dataclass(frozen=True, kw_only=True, slots=True)
class Where:
    """One filter as written: ``key``, ``operator``, the value's text."""

    key: str
    operator: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Where:
        found = WHERE.match(text)
        if found is None:
            raise InvalidFilter(
                f"Cannot read the filter {shown(text)}: write KEY OPERATOR VALUE, the "
                f"operator one of {' '.join(OPERATORS)} (e.g. score>0.9)."
            )
        return cls(key=found[1], operator=found[2], value=found[3])

    def __str__(self) -> str:
        return f"{self.key}{self.operator}{self.value}"

    def condition(self, key: ResultKey, prefix: str = "") -> Q:
        """The condition on ``key``'s Result rows (reached through ``prefix``)."""
        text = str(self)
        column = prefix + key.column
        if self.operator == "~":
            if key.kind != AttributeKind.TEXT:
                raise InvalidFilter(f"{shown(text)}: '~' (contains) applies to text results only.")
            return Q(GreaterThan(StrIndex(column, Value(self.value)), 0))
        value = value_for(key, self.value, text)
        if key.kind == AttributeKind.BOOLEAN:
            if self.operator not in ("=", "!="):
                raise InvalidFilter(f"{shown(text)}: a boolean result takes '=' or '!=' only.")
            return Q(**{column: value if self.operator == "=" else not value})
        if self.operator == "!=":
            return Q(**{f"{column}__lt": value}) | Q(**{f"{column}__gt": value})
        return Q(**{f"{column}__{LOOKUPS[self.operator]}": value})


@dataclass(frozen=True, kw_only=True, slots=True)
class Sort:
    """A sort by a result key or by the dataset's slug; ``-`` for descending."""

    key: str
    descending: bool = False

    @classmethod
    def parse(cls, text: str) -> Sort:
        found = SORT.match(text.strip())
        if found is None:
            raise InvalidFilter(
                f"Cannot read the sort {shown(text)}: give a result key or slug, with '-' "
                "before it for descending (e.g. -score)."
            )
        return cls(key=found[2], descending=bool(found[1]))


def wheres(given: Iterable[str | Where]) -> list[Where]:
    return [item if isinstance(item, Where) else Where.parse(item) for item in given]


def columns_of(schema: Schema, given: str | Sequence[str] | None) -> list[ResultKey]:
    """The keys shown: those given (``"a,b"`` or a list), in that order; all, by name."""
    if given is None:
        return [schema[name] for name in sorted(schema)]
    names = given.split(",") if isinstance(given, str) else list(given)
    chosen = []
    for name in (name.strip() for name in names):
        if not name:
            continue
        if name not in schema:
            raise InvalidFilter(f"Unknown result {shown(name)} in the columns: {known(schema)}.")
        if schema[name] not in chosen:
            chosen.append(schema[name])
    return chosen


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Validated filters and sort of a project's datasets: what ``apply`` does to a queryset."""

    filters: dict[str, tuple[ResultKey, list[Where]]]
    """{key name: the key and its filters}."""
    sort: Sort | None
    sort_key: ResultKey | None

    @classmethod
    def of(
        cls, schema: Schema, where: Iterable[str | Where] = (), sort: str | Sort | None = None
    ) -> Selection:
        filters: dict[str, tuple[ResultKey, list[Where]]] = {}
        for item in wheres(where):
            key = key_of(schema, item.key, str(item))
            item.condition(key)  # checked now, before any query
            filters.setdefault(key.name, (key, []))[1].append(item)
        if isinstance(sort, str):
            sort = Sort.parse(sort) if sort.strip() else None
        sort_key = None
        if sort is not None and sort.key != "slug":
            sort_key = key_of(schema, sort.key, ("-" if sort.descending else "") + sort.key)
        return cls(filters=filters, sort=sort, sort_key=sort_key)

    def condition(self, name: str, prefix: str = "") -> Q:
        key, items = self.filters[name]
        condition = Q()
        for item in items:
            condition &= item.condition(key, prefix)
        return condition

    def filtered(self, datasets: QuerySet[Dataset]) -> QuerySet[Dataset]:
        """``datasets`` that pass the filters, one semi-join per key; a filter on the sort's
        key is left to ``apply``, which joins that key anyway."""
        for name, (key, _) in self.filters.items():
            if self.sort_key is None or key.pk != self.sort_key.pk:
                matching = Result.objects.filter(Q(key_id=key.pk) & self.condition(name))
                datasets = datasets.filter(pk__in=matching.values("dataset_id"))
        return datasets

    def apply(self, datasets: QuerySet[Dataset], *, having: bool = False) -> QuerySet[Dataset]:
        """``datasets`` filtered (one semi-join per key) and sorted.

        A sort by a filtered key, or any sort with ``having`` (only the datasets that have
        the sort's key), joins its results once, as an inner join the database walks in
        the order of the key's index, stopping at the page's end. Otherwise the datasets
        without the key follow, which takes a left join and a sort of every dataset.
        """
        sort_key, sort = self.sort_key, self.sort
        datasets = self.filtered(datasets)
        if sort is None:
            return datasets
        if sort_key is None:
            return datasets.order_by(("-" if sort.descending else "") + "slug")
        relation = FilteredRelation("results", condition=Q(results__key_id=sort_key.pk))
        datasets = datasets.alias(**{SORT_ALIAS: relation})
        value = F(f"{SORT_ALIAS}__{sort_key.column}")
        if sort_key.name in self.filters:  # every dataset left has the key: no NULLs
            datasets = datasets.filter(self.condition(sort_key.name, f"{SORT_ALIAS}__"))
        elif having:
            datasets = datasets.filter(**{f"{SORT_ALIAS}__{sort_key.column}__isnull": False})
        else:
            order = value.desc(nulls_last=True) if sort.descending else value.asc(nulls_last=True)
            return datasets.order_by(order, "-id" if sort.descending else "id")
        order = value.desc() if sort.descending else value.asc()
        return datasets.order_by(order, "-id" if sort.descending else "id")

    def window(self, datasets: QuerySet[Dataset], offset: int, limit: int) -> list[Dataset]:
        """``apply(datasets)[offset:offset + limit]``, read without sorting every dataset.

        With a sort by a key that is not filtered, the datasets that have the key are read
        first, walking the key's index (``having``); those without it follow in id order,
        read (and the others counted) only by the page that reaches them.
        """
        sort_key = self.sort_key
        if sort_key is None or sort_key.name in self.filters or self.sort is None:
            return list(self.apply(datasets)[offset : offset + limit])
        with_key = self.apply(datasets, having=True)
        rows = list(with_key[offset : offset + limit])
        if len(rows) == limit:
            return rows
        before = offset + len(rows) if rows else with_key.count()
        has_key = Result.objects.filter(dataset_id=OuterRef("pk"), key_id=sort_key.pk)
        without = self.filtered(datasets).filter(~Exists(has_key))
        start = max(0, offset - before)
        order = "-id" if self.sort.descending else "id"
        return rows + list(without.order_by(order)[start : start + limit - len(rows)])


@dataclass(frozen=True)
class Windowed:
    """``selection.apply(datasets)`` as a paginator reads it, its count and its slices,
    each slice read by ``Selection.window``: a page sorted by a result without sorting
    every dataset (the API's list; the project page calls ``window`` itself)."""

    datasets: QuerySet[Dataset]
    selection: Selection
    ordered = True
    """What Django's Paginator checks before it pages."""

    def count(self) -> int:
        sort_key, selection = self.selection.sort_key, self.selection
        if sort_key is not None and sort_key.name in selection.filters:
            return selection.apply(self.datasets).count()  # its filter is in the sort's join
        return selection.filtered(self.datasets).count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, item: slice) -> list[Dataset]:
        start = item.start or 0
        stop = self.count() if item.stop is None else item.stop
        return self.selection.window(self.datasets, start, max(0, stop - start))
