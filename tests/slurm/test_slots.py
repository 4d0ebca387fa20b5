"""Issue 27: ``crunch submit --slots 4`` on the real single-node Slurm: one task, one loop,
four datasets at once; every status names its job, array task and slot.

It needs ``crunch loop --slots`` (crunchclient/worker/slots.py) and the server's
``Status.slot`` and overview "slots".
"""

from __future__ import annotations

import re
import threading
from collections import Counter

import pytest

from crunch.models import Dataset, Status
from tests.clientkit import SIX, statuses
from tests.slurm.conftest import Cluster, job_id_of, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DATASETS = 16


def test_slots_4_completes_a_project_and_every_status_names_job_task_and_slot(
    cluster: Cluster,
) -> None:
    # Two seconds a dataset: the four slots overlap, and `crunch status` sees them busy.
    project = cluster.crunch.project("Slots", "sleep 2\necho done > out.txt\n")
    slugs = [
        cluster.crunch.dataset(project["slug"], f"d{i:02d}", {"in.txt": str(i)})["slug"]
        for i in range(DATASETS)
    ]
    # --exclusive: the test node may have fewer CPUs than 4 slots x 1 core would ask for.
    result = cluster.submit("--project", project["slug"], "--slots", "4", "--exclusive",
                            "--time", "3m", "--wait", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = job_id_of(result.stdout)
    assert f"1 task(s) of 'crunch loop --project {project['slug']} --slots 4' on a whole " in (
        result.stdout
    )

    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:  # what a user watching the run sees
        while not done.wait(1.0):
            shown = cluster.crunch.run("status", "--project", project["slug"])
            seen.extend(line for line in shown.stdout.splitlines() if "busy" in line)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        wait_until(
            lambda: not cluster.tasks(), timeout=180, what="the task of 4 slots did not end",
            why=lambda: f"queue {cluster.tasks()}; {cluster.outputs()}",
        )  # fmt: skip
    finally:
        done.set()
        watcher.join()
    completed = Dataset.objects.filter(slug__in=slugs, state="completed").count()
    assert completed == DATASETS, cluster.outputs()
    for slug in slugs:
        assert statuses(slug) == SIX  # completed exactly once: one clean run
    rows = list(Status.objects.filter(dataset__slug__in=slugs).select_related("dataset"))
    assert len(rows) == 6 * DATASETS
    named = Counter((row.slurm_job_id, row.slurm_array_task_id, row.slot) for row in rows)
    assert {(job_id, task) for job_id, task, _ in named} == {(job, "1")}, named
    slots_used = {slot for _, _, slot in named}
    assert slots_used <= {0, 1, 2, 3} and len(slots_used) > 1, named  # ran side by side
    for slug in slugs:  # a dataset's six statuses come from its one slot
        assert len({row.slot for row in rows if row.dataset.slug == slug}) == 1
    # `crunch status` showed the loop's four slots, some busy.
    shown = [line for line in seen if re.search(r"\d busy, \d free of 4$", line)]
    assert any(f"job {job}" in line for line in shown), seen
    assert any(re.match(r"Slots: [1-4] of 4 busy in 1 loop\(s\):", line) for line in seen), seen
