"""Putting failed datasets back in the queue: from the admin, the API and the client alike."""

from __future__ import annotations

from crunch.choices import DatasetState
from crunch.exceptions import InvalidTransition
from crunch.models import Dataset, DatasetQuerySet, Project

RETRY_VALUES = {"state": DatasetState.PENDING, "attempts": 0, "finished": None, "not_before": None}


def retry(dataset: Dataset) -> Dataset:
    """Return a failed dataset to pending with a fresh set of attempts."""
    if Dataset.objects.failed().filter(pk=dataset.pk).update(**RETRY_VALUES) != 1:
        dataset.refresh_from_db(fields=["state"])
        raise InvalidTransition(
            f"Dataset {dataset.slug!r} is {dataset.state}, not failed; "
            "only failed datasets are retried."
        )
    dataset.refresh_from_db()
    return dataset


def retry_failed(datasets: DatasetQuerySet | None = None, *, project: Project | None = None) -> int:
    """Return every failed dataset (of ``datasets`` or of ``project``) to pending; count them."""
    queryset = Dataset.objects.all() if datasets is None else datasets
    if project is not None:
        queryset = queryset.filter(project=project)
    return queryset.failed().update(**RETRY_VALUES)
