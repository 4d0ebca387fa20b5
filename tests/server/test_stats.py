from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from crunch.services.stats import project_stats
from tests.factories import make_dataset, make_project

pytestmark = pytest.mark.django_db


def test_a_run_that_started_recently_is_not_averaged_over_the_hour():
    project = make_project(name="P")
    now = timezone.now()
    for i in range(4):
        finished = now - datetime.timedelta(seconds=20 - i)
        make_dataset(project, name=f"done{i}", state="completed", finished=finished)
    for i in range(8):
        make_dataset(project, name=f"todo{i}")
    stats = project_stats(project)
    assert stats.completed_recently == 4
    assert 18 <= stats.window_seconds <= 25  # since the first completion, not 3600
    assert 35 <= stats.eta_seconds <= 50  # 8 left at 4 per ~20 s
    assert stats.as_dict()["pending"] == 8


def test_nothing_finished_recently_has_no_estimate():
    project = make_project(name="P")
    make_dataset(project, name="todo")
    make_dataset(
        project, name="old", state="completed", finished=timezone.now() - datetime.timedelta(days=1)
    )
    stats = project_stats(project)
    assert (stats.completed_recently, stats.eta_seconds, stats.total) == (0, None, 2)
