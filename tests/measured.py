"""Completed runs of a measured length, as the server's run-time percentile reads them."""

from __future__ import annotations

import datetime
import uuid

from django.utils import timezone

from crunch.models import Dataset, Project, Status


def measured_run(project: Project, name: str, seconds: float) -> Dataset:
    """A completed dataset whose run took ``seconds``: its Setup Start and Upload Success."""
    end = timezone.now()
    start = end - datetime.timedelta(seconds=seconds)
    dataset = Dataset.objects.create(project=project, name=name, state="completed", finished=end)
    claim = uuid.uuid4()
    for stage, state, created in ((1, 1, start), (1, 2, start), (3, 1, end), (3, 2, end)):
        Status.objects.create(
            dataset=dataset, stage=stage, state=state, claim_id=claim, created=created
        )
    return dataset
