"""The stats' run-time percentile: what batch jobs fit their remaining time to."""

from __future__ import annotations

import uuid

import pytest

from crunch.models import Status
from crunch.services.stats import percentile, project_stats
from tests.factories import make_dataset, make_project
from tests.measured import measured_run

pytestmark = pytest.mark.django_db


def test_p90_of_completed_runs_from_setup_start_to_upload_success():
    project = make_project(name="P")
    for i in range(10):
        measured_run(project, f"d{i}", seconds=10 * (i + 1))  # 10 s .. 100 s
    make_dataset(project, name="todo")
    stats = project_stats(project)
    assert stats.runs_measured == 10
    assert stats.run_seconds_p90 == pytest.approx(90, abs=0.01)
    assert stats.as_dict()["run_seconds_p90"] == stats.run_seconds_p90
    assert stats.as_dict()["pending"] == 1  # the other figures stay as they were


def test_only_the_final_claim_of_a_retried_dataset_counts():
    project = make_project(name="P")
    dataset = measured_run(project, "d", seconds=20)
    # An earlier attempt that failed: its statuses carry another claim and no Upload Success.
    Status.objects.create(dataset=dataset, stage=1, state=1, claim_id=uuid.uuid4())
    assert project_stats(project).run_seconds_p90 == pytest.approx(20, abs=0.01)


def test_no_completed_run_no_percentile():
    project = make_project(name="P")
    make_dataset(project, name="todo")
    stats = project_stats(project)
    assert (stats.run_seconds_p90, stats.runs_measured) == (None, 0)


def test_percentile_is_nearest_rank():
    assert percentile([], 90) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([float(v) for v in range(1, 21)], 90) == 18.0
