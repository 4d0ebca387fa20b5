"""Issue 28 on the real Slurm: a workflow that needs more memory than its first task has
fails with out-of-memory, and ``crunch submit --mem-retry x2`` finishes it in a task with
twice the memory.

The test cluster does not enforce memory (TaskPlugin=task/none, CR_CPU; it is shared by
every Slurm test, so its configuration stays as it is): the task's loop does, with a
cgroup of its own limited to its ``--memory``, which ``crunch submit`` sets to the task's
``--mem`` (crunchclient/worker/workflow/memcage.py). On a cluster with task/cgroup, Slurm's
own cgroup kills the workflow and the loop reads the same counter.
"""

from __future__ import annotations

import subprocess

import pytest

from crunch.models import Dataset, Status
from crunchclient.worker.workflow.memcage import MemoryCage
from tests.slurm.conftest import Cluster

MiB = 1024**2
HUNGRY = 'set -e\npython3 -c "b = bytearray(300 * 1024 * 1024)"\necho "$CRUNCH_ATTEMPT" > out.txt\n'


@pytest.mark.django_db(transaction=True)
def test_mem_retry_x2_finishes_an_out_of_memory_dataset_in_a_task_with_twice_the_memory(
    cluster: Cluster,
) -> None:
    probe = MemoryCage.make(200 * MiB, "probe")
    if probe is None:
        pytest.skip("the loop cannot make a memory cgroup on this machine to enforce --mem")
    probe.remove()
    project = cluster.crunch.project("Hungry", HUNGRY, max_attempts=3, retry_delay=0)
    dataset = cluster.crunch.dataset(project["slug"], "one", {"in.txt": "x"})

    keeper = cluster.start(
        "--project", project["slug"], "--keep", "1", "--time", "2m", "--margin", "30s",
        "--poll", "2", "--wait", "2", "--mem", "200M", "--mem-retry", "x2",
        "--mem-ceiling", "1G",
    )  # fmt: skip
    try:
        out, err = keeper.communicate(timeout=240)
    finally:
        keeper.kill()
        subprocess.run(["scancel", "--name", f"{cluster.job_name}-mem400M"], check=False)
    assert keeper.returncode == 0, err + cluster.outputs()
    fails = Status.objects.filter(dataset__slug=dataset["slug"], state=3)
    assert [(f.reason, f.reason_detail, f.memory) for f in fails] == [
        ("out-of-memory", "oom_kill", 200 * MiB)
    ]
    row = Dataset.objects.get(slug=dataset["slug"])
    assert (row.state, row.attempts, row.needs_memory) == ("completed", 2, None)
    assert cluster.crunch.stored(dataset)["out.txt"] == "2\n"
    assert "task(s) with --mem 400M for 1 dataset(s) that need more" in out, out
    # The second run was the level's task: sbatch was asked for twice the memory.
    jobs = [line.split()[2].rstrip(":") for line in out.splitlines() if "--mem 400M" in line]
    shown = subprocess.run(
        ["scontrol", "show", "job", jobs[0]], capture_output=True, text=True, check=False
    ).stdout
    assert not shown or "MinMemoryNode=400M" in shown or "mem=400M" in shown, shown
