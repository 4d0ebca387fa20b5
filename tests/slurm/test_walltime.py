"""Issue 14: Slurm signals a task before its wall time; its dataset goes back unspent."""

from __future__ import annotations

from pathlib import Path

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import SIX, statuses
from tests.slurm.conftest import Cluster, job_id_of, wait_until
from tests.slurm.test_submit import slurm_ids

pytestmark = pytest.mark.django_db(transaction=True)


def first_run_outlasts_the_job(marker: Path) -> str:
    """A workflow whose first run needs 5 minutes, more than the job's 1; later runs do not."""
    return f'if [ ! -e "{marker}" ]; then touch "{marker}"; sleep 300; fi\necho done > out.txt\n'


def test_wall_time_mid_dataset_releases_it_and_another_task_completes_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    # One attempt only: a wall-time kill that spent it would leave the dataset failed.
    workflow = first_run_outlasts_the_job(tmp_path / "started")
    project = cluster.crunch.project("Walltime", workflow, max_attempts=1)
    slug = cluster.crunch.dataset(project["slug"], "long", {"in.txt": "x"})["slug"]
    result = cluster.submit("--project", project["slug"], "--jobs", "3", "--time", "1m",
                            "--wait", "2", f"--loop-arg=--bind={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = job_id_of(result.stdout)
    wait_until(
        lambda: not cluster.tasks() and Dataset.objects.get(slug=slug).state == "completed",
        timeout=150, what="the dataset was not completed by another task",
        why=lambda: f"statuses {statuses(slug)}; queue {cluster.tasks()}; {cluster.outputs()}",
    )  # fmt: skip
    assert statuses(slug) == [(1, 1), (1, 2), (2, 1), (2, 3), *SIX]
    rows = list(Status.objects.filter(dataset__slug=slug).order_by("created", "id"))
    released = rows[3]
    # Slurm's signal, or the loop's own --time-limit (the same moment): the wall time either
    # way, which spends no attempt (issue 28).
    assert "SIGTERM" in released.note or "--time-limit" in released.note, released.note
    assert "released" in released.note, released.note
    assert (released.reason, released.reason_detail) == ("time-limit", "wall-time")
    first, second = slurm_ids(rows[0]), slurm_ids(rows[-1])
    assert first[0] == second[0] == job
    assert first[1] != second[1]  # another task of the array completed it
    # The release's Fail is recorded by the server itself; the client posted the rest.
    assert {slurm_ids(row) for row in rows[:3]} == {first} and slurm_ids(rows[3]) == ("", "")
    assert {slurm_ids(row) for row in rows[4:]} == {second}
    said = cluster.outputs()
    assert "Received SIGTERM" in said or "--time-limit" in said
