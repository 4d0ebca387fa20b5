"""Issue 14: ``crunch submit`` on a real single-node Slurm, against a live server."""

from __future__ import annotations

import stat
from collections import Counter

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import SIX, error_line, statuses
from tests.slurm.conftest import Cluster, job_id_of, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def slurm_ids(status: Status) -> tuple[str, str]:
    """The Slurm job and array task a status names."""
    return status.slurm_job_id, status.slurm_array_task_id


def test_a_job_array_of_3_completes_30_datasets_once_each(cluster: Cluster) -> None:
    project = cluster.crunch.project("Many", "echo done > out.txt\n")
    slugs = [
        cluster.crunch.dataset(project["slug"], f"d{i:02d}", {"in.txt": str(i)})["slug"]
        for i in range(30)
    ]
    result = cluster.submit("--project", project["slug"], "--jobs", "3", "--time", "2m",
                            "--wait", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = job_id_of(result.stdout)
    assert f"squeue -j {job}" in result.stdout
    # The script sources a private file; neither holds the secrets on a command line.
    (script,) = (cluster.home / ".crunch" / "submit").glob("*.sh")
    (env_file,) = (cluster.home / ".crunch" / "submit").glob("*.env")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert cluster.crunch.token in env_file.read_text()
    assert cluster.crunch.token not in script.read_text() and str(env_file) in script.read_text()

    wait_until(
        lambda: not cluster.tasks()
        and Dataset.objects.filter(slug__in=slugs, state="completed").count() == 30,
        timeout=120, what="the 3 tasks did not complete the 30 datasets",
        why=lambda: f"queue {cluster.tasks()}; {cluster.outputs()}",
    )  # fmt: skip
    for slug in slugs:
        assert statuses(slug) == SIX  # completed exactly once: one clean run
    rows = Status.objects.filter(dataset__slug__in=slugs)
    assert rows.count() == 180
    named = Counter(slurm_ids(row) for row in rows)
    assert {task_job for task_job, _ in named} == {job}, named
    assert {task for _, task in named} <= {"1", "2", "3"}


def test_dry_run_prints_a_script_without_secrets_and_submits_nothing(cluster: Cluster) -> None:
    project = cluster.crunch.project("Dry", "true\n")
    result = cluster.submit(
        "--project", project["slug"], "--jobs", "4", "--time", "1h30m", "--dry-run",
        "--partition", "debug", "--cpus-per-task", "2", "--mem", "1G",
        "--setup", "module load python", "--sbatch-arg=--mail-type=END",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    script = result.stdout
    for line in ("#SBATCH --array=1-4", "#SBATCH --time=01:30:00", "#SBATCH --partition=debug",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --mem=1G", "#SBATCH --mail-type=END",
                 "#SBATCH --signal=B:TERM@300", "module load python"):  # fmt: skip
        assert line in script.splitlines(), script
    assert "--time-limit 5100s" in script and "--cores 2" in script and "exec " in script
    for secret in (cluster.crunch.token, cluster.crunch.url, str(cluster.crunch.settings_file)):
        assert secret not in script
    assert not cluster.tasks()
    assert not list(cluster.home.rglob("*.env"))  # nothing written either


def test_a_refused_sbatch_is_one_line_with_slurms_message(cluster: Cluster) -> None:
    project = cluster.crunch.project("Refused", "true\n")
    result = cluster.submit("--project", project["slug"], "--time", "1m",
                            "--partition", "no-such-partition")  # fmt: skip
    assert result.returncode == 11
    line = error_line(result)
    assert line == result.stderr.strip()  # one line, nothing else
    assert line.startswith("CommandError: sbatch failed (exit code 1): ")
    assert "invalid partition specified: no-such-partition" in line
    assert not list(cluster.home.rglob("*.env"))  # no private file left behind


def test_help_lists_every_option(cluster: Cluster) -> None:
    result = cluster.crunch.run("submit", "--help")
    assert result.returncode == 0, result.stderr
    for option in (
        "--project", "--jobs", "--time", "--margin", "--keep", "--poll", "--dry-run",
        "--partition", "--account", "--qos", "--cpus-per-task", "--mem", "--gres",
        "--constraint", "--output", "--sbatch-arg", "--job-name", "--setup", "--directory",
        "--wait", "--loop-arg", "--url", "--token", "--storage-settings", "--slots",
        "--exclusive", "--nodes", "--cores-per-slot", "--gpus-per-slot", "--mem-per-slot",
        "--mem-retry", "--mem-ceiling", "--timeout", "--time-retry", "--time-ceiling",
    ):  # fmt: skip
        assert option in result.stdout, option
