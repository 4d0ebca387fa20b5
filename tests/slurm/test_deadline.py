"""Issue 14: a loop claims only what fits in the time its job has left (no Slurm needed)."""

from __future__ import annotations

import pytest

from crunch.models import Dataset, Project, Status
from crunchclient.server.wire import ProjectStats
from crunchclient.worker.deadline import Deadline, slurm_job_end
from tests.clientkit import Crunch
from tests.measured import measured_run

pytestmark = pytest.mark.django_db(transaction=True)


def measured_project(crunch: Crunch, name: str, seconds: float, pending: int) -> list[str]:
    project = crunch.project(name, "echo done > out.txt\n")
    row = Project.objects.get(slug=project["slug"])
    for i in range(3):
        measured_run(row, f"done{i}", seconds)
    return [
        crunch.dataset(project["slug"], f"todo{i}", {"in.txt": "x"})["slug"] for i in range(pending)
    ]


def test_40s_left_and_runs_measured_at_60s_claims_nothing(crunch: Crunch) -> None:
    slugs = measured_project(crunch, "Long", 60, pending=2)
    result = crunch.run("loop", "--project", "long", "--time-limit", "40", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("Processed 0 dataset(s): 0 completed, 0 failed"), last
    assert "less than a dataset needs (60s, the project's 90th percentile)" in last
    assert set(Dataset.objects.filter(slug__in=slugs).values_list("state", flat=True)) == {
        "pending"
    }
    assert not Status.objects.filter(dataset__slug__in=slugs).exists()


def test_runs_that_fit_are_claimed(crunch: Crunch) -> None:
    slugs = measured_project(crunch, "Short", 20, pending=2)
    result = crunch.run("loop", "--project", "short", "--time-limit", "40", "--quiet")
    assert result.returncode == 0, result.stderr
    assert Dataset.objects.filter(slug__in=slugs, state="completed").count() == 2


def test_the_job_end_comes_from_slurm_job_end_time() -> None:
    assert slurm_job_end({"SLURM_JOB_END_TIME": "1800000000"}) == 1800000000.0
    assert slurm_job_end({}) is None


def test_without_measured_runs_the_slowest_of_the_loop_decides() -> None:
    now = [0.0]
    deadline = Deadline(
        ends_at=100.0, source="the job's end", stats=lambda: ProjectStats(
            pending=1, running=0, completed=0, failed=0, run_seconds_p90=None
        ),
        clock=lambda: now[0],
    )  # fmt: skip
    assert deadline.stop_reason(slowest=90) is None
    now[0] = 20.0
    reason = deadline.stop_reason(slowest=90)
    assert reason == (
        "80s left before the job's end, less than a dataset needs (90s, the slowest of this loop)"
    )
    now[0] = 100.0
    assert deadline.stop_reason(slowest=0) == "the job's end reached"


def test_no_end_known_no_limit() -> None:
    assert Deadline(ends_at=None).stop_reason(slowest=10**6) is None
