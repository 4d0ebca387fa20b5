"""Registering many datasets at once: what ``crunch import`` sends, in batches.

Idempotent: a dataset whose slug already exists is left as it is and counted as
existing, so re-running an import adds only what is new. Each batch is one transaction:
the check for existing slugs and overlapping folders, the datasets and their attributes.

Rows are written by crunch.db.bulk: one prepared INSERT over the whole batch (COPY on
PostgreSQL) rather than ``bulk_create``; like it, no ``save()`` and no signals.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Substr
from django.utils.text import slugify

from crunch.access import Action, projects_where
from crunch.choices import AttributeKind
from crunch.db import bulk
from crunch.exceptions import CrunchError
from crunch.models import Attribute, Dataset, Project, default_base_file_path
from crunch.models.datasets import VALUE_COLUMN
from crunch.services.paths import UnsafePath, ancestors, clean_base_file_path

SLUG_MAX = 1023  # characters: Node.slug's column
PARAMETERS = 900  # values bound in one lookup: below SQLite's smallest limit (999)
DATASET_FIELDS = ("name", "slug", "description", "details", "priority", "base_file_path")
ATTRIBUTE_FIELDS = ("dataset", "kind", "key", "text", "integer", "number", "longitude",
                    "boolean", "date", "datetime")  # fmt: skip


class InvalidRegistration(CrunchError):
    """A dataset of the batch cannot be registered."""


@dataclass(frozen=True, kw_only=True)
class NewAttribute:
    key: str
    kind: AttributeKind
    value: Any
    """Already of the kind's Python type (a (latitude, longitude) pair for lat-long)."""


@dataclass(frozen=True, kw_only=True)
class NewDataset:
    name: str
    base_file_path: str = ""
    description: str = ""
    details: str = ""
    priority: int = 0
    attributes: Sequence[NewAttribute] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class Registration:
    created: list[str]
    existing: list[str]


@dataclass(frozen=True)
class _Planned:
    entry: NewDataset
    slug: str
    path: str


def register_datasets(
    project: Project, entries: Iterable[NewDataset], *, viewer: Any = None
) -> Registration:
    """Create the datasets of ``entries`` that ``project`` does not have yet, in one transaction.

    Raises InvalidRegistration, naming the entry, before anything is written; a stored
    dataset whose folder collides is named only if ``viewer`` (None: anyone) may view it.
    """
    planned: dict[str, _Planned] = {}
    for entry in entries:
        slug = f"{project.slug}:{slugify(entry.name) or 'unnamed'}"
        if len(slug) > SLUG_MAX:
            raise InvalidRegistration(f"The name {entry.name[:40]!r}... is too long for a slug.")
        if slug not in planned:
            planned[slug] = _Planned(entry, slug, _path_of(entry, slug))
    with transaction.atomic():
        existing: set[str] = set()
        for chunk in _chunks(list(planned), PARAMETERS):
            existing.update(Dataset.objects.filter(slug__in=chunk).values_list("slug", flat=True))
        new = [plan for slug, plan in planned.items() if slug not in existing]
        _check_folders(new, viewer=viewer, project=project)
        ids = _create(project, new)
    return Registration(
        created=[plan.slug for plan in new if plan.slug in ids],
        existing=[slug for slug in planned if slug in existing],
    )


def _path_of(entry: NewDataset, slug: str) -> str:
    if not entry.base_file_path:
        return default_base_file_path(slug)
    try:
        return clean_base_file_path(entry.base_file_path)
    except UnsafePath as exc:
        raise InvalidRegistration(f"Dataset {entry.name!r}: {exc}") from None


# ---------------------------------------------------------------------------- folders


def _check_folders(new: Sequence[_Planned], *, viewer: Any, project: Project) -> None:
    """No new folder may equal, hold or lie inside another dataset's, new or stored.

    Only the stored folders that could collide with a new one are read (_stored_near).
    """
    paths = {plan.path: plan.slug for plan in new}
    if len(paths) < len(new):
        seen: set[str] = set()
        for plan in new:
            if plan.path in seen:
                raise InvalidRegistration(
                    f"Two datasets have the folder {plan.path!r}; "
                    "give each dataset a folder of its own."
                )
            seen.add(plan.path)
    if not paths:
        return
    stored = _stored_near(list(paths))
    everyone = {**stored, **paths}
    holders = {folder: path for path in everyone for folder in ancestors(path)}
    for path, slug in paths.items():
        other = stored.get(path) or next(
            (everyone[a] for a in ancestors(path) if a in everyone), None
        )
        if other is None and path in holders:
            other = everyone[holders[path]]
        if other is not None and other != slug:
            whose = f"dataset {other!r}" if _visible(other, viewer, project) else "another dataset"
            raise InvalidRegistration(
                f"Dataset {slug!r}: the folder {path!r} overlaps the folder of {whose}; "
                "give each dataset a folder of its own."
            )


def _visible(slug: str, viewer: Any, project: Project) -> bool:
    """Whether ``viewer`` may see the dataset ``slug`` (one of ``project``'s, or of another)."""
    owner = slug.partition(":")[0]
    if viewer is None or owner == project.slug:
        return True
    return projects_where(viewer, Action.VIEW).filter(slug=owner).exists()


def _stored_near(paths: Sequence[str]) -> dict[str, str]:
    """{folder: slug} of the stored datasets whose folder equals one of ``paths``, holds
    one or lies inside one, in the order of their ids.

    ``base_file_path`` has no index, so each lookup scans the table: one query for the
    batch (more only past the database's limit on bound values), never a query per path
    nor every stored folder read into Python. It matches the paths and their ancestors,
    and for folders inside a path the column's first characters equal to ``path/`` (one
    ``IN`` per length). Exact and case-sensitive on SQLite and PostgreSQL (no LIKE).
    """
    above = sorted({folder for path in paths for folder in (path, *ancestors(path))})
    heads: dict[int, list[str]] = {}
    for path in sorted(paths):
        heads.setdefault(len(path) + 1, []).append(path + "/")
    terms: list[tuple[int, list[str]]] = [(0, chunk) for chunk in _chunks(above, PARAMETERS)]
    for length, group in heads.items():
        terms += [(length, chunk) for chunk in _chunks(group, PARAMETERS)]
    near: list[tuple[int, str, str]] = []
    for query in _packed(terms, _parameter_limit()):
        condition = Q()
        for length, values in query:
            condition |= Q(**{f"head_{length}__in" if length else "base_file_path__in": values})
        heads_of = {f"head_{n}": Substr("base_file_path", 1, n) for n, _ in query if n}
        rows = Dataset.objects.annotate(**heads_of).filter(condition).order_by()
        near += rows.values_list("id", "base_file_path", "slug")
    return {path: slug for _id, path, slug in sorted(near)}


def _packed(
    terms: list[tuple[int, list[str]]], limit: int
) -> Iterator[list[tuple[int, list[str]]]]:
    """The terms in as few queries as the limit on bound values allows."""
    query: list[tuple[int, list[str]]] = []
    bound = 0
    for term in terms:
        if query and bound + len(term[1]) > limit:
            yield query
            query, bound = [], 0
        query.append(term)
        bound += len(term[1])
    if query:
        yield query


def _parameter_limit() -> int:
    """Values one statement may bind on the datasets' database."""
    return bulk.parameter_limit(Dataset)


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# ---------------------------------------------------------------------------- rows


def _create(project: Project, new: Sequence[_Planned]) -> set[str]:
    """Insert the new datasets and their attributes; the slugs created."""
    if not new:
        return set()
    bulk.insert_rows(
        Dataset, {"project": project}, DATASET_FIELDS,
        [(p.entry.name, p.slug, p.entry.description, p.entry.details, p.entry.priority,
          p.path) for p in new],
    )  # fmt: skip
    ids: dict[str, int] = {}
    for chunk in _chunks([plan.slug for plan in new], PARAMETERS):
        ids.update(Dataset.objects.filter(slug__in=chunk).values_list("slug", "id"))
    rows = [
        _attribute_row(ids[plan.slug], attribute)
        for plan in new
        for attribute in plan.entry.attributes
    ]
    if rows:
        bulk.insert_rows(Attribute, {}, ATTRIBUTE_FIELDS, rows)
    return set(ids)


def _attribute_row(dataset_id: int, attribute: NewAttribute) -> tuple[Any, ...]:
    values: dict[str, Any] = {}
    if attribute.kind == AttributeKind.LATLONG:
        values["number"], values["longitude"] = attribute.value
    else:
        values[VALUE_COLUMN[attribute.kind]] = attribute.value
    return (
        dataset_id, attribute.kind.value, attribute.key, values.get("text", ""),
        *(values.get(name) for name in ATTRIBUTE_FIELDS[4:]),
    )  # fmt: skip
