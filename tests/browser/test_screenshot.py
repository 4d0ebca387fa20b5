"""The README's screenshot: the project page of a run in progress.

Always renders the page; writes ``docs/project-page-busy.png`` only with UPDATE_SCREENSHOT=1:

    UPDATE_SCREENSHOT=1 .venv/bin/pytest tests/browser/test_screenshot.py -p no:randomly
"""

from __future__ import annotations

import datetime
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from crunch.choices import DatasetState
from crunch.models import Dataset, Project, Status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TARGET = Path(__file__).resolve().parents[2] / "docs" / "project-page-busy.png"
ERRORS = [
    "Traceback (most recent call last):\n  File \"analyse.py\", line 41\nKeyError: 'salinity'",
    "OSError: [Errno 28] No space left on device",
    "snakemake: MissingInputException in rule align: raw/reads.fastq",
]


def demo_run(total: int = 1200) -> Project:
    """A survey mid-run: most done, a few failing the same way, six clients at work."""
    rng = random.Random(7)
    now = timezone.now()
    project = Project.objects.create(
        name="Ocean survey 2024", slug="ocean-survey", is_public=True,
        description="Temperature and salinity profiles from 1,200 Argo floats.",
    )  # fmt: skip
    datasets = []
    for i in range(total):
        roll = rng.random()
        state = (
            DatasetState.COMPLETED
            if roll < 0.62
            else DatasetState.FAILED
            if roll < 0.66
            else DatasetState.PENDING
        )
        datasets.append(
            Dataset(
                project=project,
                name=f"float-{5900000 + i}",
                slug=f"ocean-survey:float-{5900000 + i}",
                base_file_path=f"crunch/ocean-survey/float-{5900000 + i}",
                state=state,
                attempts=0 if state == DatasetState.PENDING else rng.choice([1, 1, 1, 2]),
                note=rng.choice(ERRORS[:2] if rng.random() < 0.8 else ERRORS)
                if state == DatasetState.FAILED
                else "",
                finished=now - datetime.timedelta(seconds=rng.randint(0, 5 * 3600))
                if state != DatasetState.PENDING
                else None,
                stage=3
                if state == DatasetState.COMPLETED
                else 2
                if state == DatasetState.FAILED
                else None,
            )
        )
    Dataset.objects.bulk_create(datasets)
    pending = list(
        Dataset.objects.filter(project=project, state=DatasetState.PENDING).order_by("id")[:6]
    )
    for n, dataset in enumerate(pending):
        host = f"hpc-node{n * 3 + 11:03d}"
        started = now - datetime.timedelta(seconds=rng.randint(30, 600))
        Dataset.objects.filter(pk=dataset.pk).update(
            state=DatasetState.RUNNING, stage=1 + n % 3, claim_id=uuid.uuid4(), attempts=1,
            claim_holder=f"slurm-{48213 + n}@{host}", claimed=started,
            heartbeat=now - datetime.timedelta(seconds=rng.randint(1, 50)),
            lease_expires=now + datetime.timedelta(minutes=5),
        )  # fmt: skip
        Status.objects.create(dataset=dataset, stage=1, state=1, hostname=host, created=started)
    return project


def test_project_page_screenshot(live_server: Any, page: Any, tmp_path: Path) -> None:
    project = demo_run()
    page.set_viewport_size({"width": 1200, "height": 1000})

    page.goto(live_server.url + project.get_absolute_url())
    page.get_by_role("heading", name="Clients working now").wait_for()
    shot = tmp_path / "project-page.png"
    page.screenshot(path=str(shot), full_page=False)

    assert shot.stat().st_size < 300_000
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        TARGET.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, TARGET)
