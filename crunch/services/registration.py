"""Registering many datasets at once: what ``crunch import`` sends, in batches.

Idempotent: a dataset whose slug already exists is left as it is and counted as
existing, so re-running an import adds only what is new.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.text import slugify

from crunch.choices import AttributeKind
from crunch.exceptions import CrunchError
from crunch.models import Attribute, Dataset, Project, default_base_file_path
from crunch.services.paths import UnsafePath, ancestors, clean_base_file_path

SLUG_MAX = 1023  # characters: Node.slug's column
VALUE_COLUMNS = {
    AttributeKind.TEXT: "text", AttributeKind.URL: "text",
    AttributeKind.INTEGER: "integer", AttributeKind.FILESIZE: "integer",
    AttributeKind.FLOAT: "number", AttributeKind.BOOLEAN: "boolean",
    AttributeKind.DATE: "date", AttributeKind.DATETIME: "datetime",
}  # fmt: skip


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


def register_datasets(project: Project, entries: Iterable[NewDataset]) -> Registration:
    """Create the datasets of ``entries`` that ``project`` does not have yet, in one transaction.

    Raises InvalidRegistration, naming the entry, before anything is written.
    """
    planned: dict[str, Dataset] = {}
    attributes: dict[str, Sequence[NewAttribute]] = {}
    for entry in entries:
        slug = f"{project.slug}:{slugify(entry.name) or 'unnamed'}"
        if len(slug) > SLUG_MAX:
            raise InvalidRegistration(f"The name {entry.name[:40]!r}... is too long for a slug.")
        if slug in planned:
            continue
        planned[slug] = Dataset(
            project=project, name=entry.name, slug=slug, description=entry.description,
            details=entry.details, priority=entry.priority,
            base_file_path=_path_of(entry, slug),
        )  # fmt: skip
        attributes[slug] = entry.attributes
    existing = set(Dataset.objects.filter(slug__in=list(planned)).values_list("slug", flat=True))
    new = [dataset for slug, dataset in planned.items() if slug not in existing]
    _check_folders(new)
    with transaction.atomic():
        created = Dataset.objects.bulk_create(new)
        Attribute.objects.bulk_create(
            _attribute(dataset, attribute)
            for dataset in created
            for attribute in attributes[dataset.slug]
        )
    return Registration(
        created=[dataset.slug for dataset in created],
        existing=[slug for slug in planned if slug in existing],
    )


def _path_of(entry: NewDataset, slug: str) -> str:
    if not entry.base_file_path:
        return default_base_file_path(slug)
    try:
        return clean_base_file_path(entry.base_file_path)
    except UnsafePath as exc:
        raise InvalidRegistration(f"Dataset {entry.name!r}: {exc}") from None


def _check_folders(new: list[Dataset]) -> None:
    """No new folder may equal, hold or lie inside another dataset's, new or stored."""
    if not new:
        return
    paths = {dataset.base_file_path: dataset.slug for dataset in new}
    if len(paths) < len(new):
        seen: set[str] = set()
        for dataset in new:
            if dataset.base_file_path in seen:
                raise InvalidRegistration(
                    f"Two datasets have the folder {dataset.base_file_path!r}; "
                    "give each dataset a folder of its own."
                )
            seen.add(dataset.base_file_path)
    stored = dict(Dataset.objects.values_list("base_file_path", "slug").iterator(chunk_size=5000))
    everyone = {**stored, **paths}
    holders = {folder: path for path in everyone for folder in ancestors(path)}
    for path, slug in paths.items():
        other = stored.get(path) or next(
            (everyone[a] for a in ancestors(path) if a in everyone), None
        )
        if other is None and path in holders:
            other = everyone[holders[path]]
        if other is not None and other != slug:
            raise InvalidRegistration(
                f"Dataset {slug!r}: the folder {path!r} overlaps the folder of dataset "
                f"{other!r}; give each dataset a folder of its own."
            )


def _attribute(dataset: Dataset, attribute: NewAttribute) -> Attribute:
    row = Attribute(dataset=dataset, kind=attribute.kind, key=attribute.key)
    if attribute.kind == AttributeKind.LATLONG:
        row.number, row.longitude = attribute.value
    else:
        setattr(row, VALUE_COLUMNS[attribute.kind], attribute.value)
    return row
